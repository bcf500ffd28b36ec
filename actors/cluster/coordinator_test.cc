// Deterministic tests of the Coordinator on CAF's test coordinator (one message at a time,
// timeouts only when the test triggers them): two workers and a driver, played by small
// test actors, join, get the peer table, and the coordinator carries out the training
// loop's phases (held-out evaluation before and after, three steps, finish); a wrong token
// is refused; a rank lost mid-run stops the others. No network, no threads, no model.
#define CAF_TEST_NO_MAIN
#include "actors/cluster/coordinator.h"

#include <algorithm>
#include <string>
#include <vector>

#include "actors/cluster/cluster_messages.h"
#include "actors/testing/actor_fixture.h"
#include "caf/test/dsl.hpp"
#include "caf/test/unit_test_impl.hpp"
#include "gtest/gtest.h"

namespace stagehand::actors::cluster {
namespace {

using TestConfig = testing::ConfigWith<RegisterClusterMessageTypes>;
using testing::TwoStages;

CoordinatorOptions Options() {
  CoordinatorOptions o;
  o.token = "token";
  o.world_size = 2;
  o.config = "--steps=3";
  o.spec = TwoStages();
  o.wte_floats = 6;
  o.loop.steps = 3;
  o.eval_batches = 2;
  return o;
}

// What the test actors saw, in order ("rank 1: eval 0", "driver: step 2", ...).
using Log = std::vector<std::string>;

// The step driver: every step's loss is 1 / step.
step_driver_actor::behavior_type FakeDriver(step_driver_actor::pointer, Log* log) {
  return {
      [=](step_atom, int64_t step) {
        log->push_back("driver: step " + std::to_string(step));
        StepOutcome out;
        out.loss = 1.0 / step;
        return out;
      },
      [](const std::vector<stage_control>&) {},
      // The stages report to the driver gate, not here.
      [](const StageStatus&) {},
      [](const StageDone&) {},
      [](const TiedGradients&) {},
      [](const SquaredNorms&) {},
      [](const OptimizerDone&) {},
      [](const GradientsDiscarded&) {},
      [](history_atom, const std::vector<double>&) {},
  };
}

// A worker of `rank` (of 2, one stage each): joins with `token`, registers, reports ready
// when the peer table arrives, answers evaluations (rank 1 holds the last chunk) and finish.
worker_actor::behavior_type FakeWorker(worker_actor::pointer self, int rank, std::string token,
                                       coordinator_actor coordinator, Log* log) {
  const worker_actor me = caf::actor_cast<worker_actor>(self);
  // The worker's stage gate and comm actor, played by the worker itself: never sent to here.
  const stage_gate_actor gate = caf::actor_cast<stage_gate_actor>(self);
  const cluster_comm_actor comm = caf::actor_cast<cluster_comm_actor>(self);
  self->request(coordinator, caf::infinite,
                JoinRequest{token, rank, 2, "--steps=3", "host", 100 + rank, me, "", 0})
      .then([=](JoinReply& reply) {
        log->push_back("rank " + std::to_string(rank) + ": " +
                       (reply.accepted ? "joined" : "refused: " + reply.reason));
        if (reply.accepted) self->send(coordinator, Registration{rank, {rank}, {gate}, {comm}});
      });
  return {
      [=](const PeerTable&) { self->send(coordinator, ready_atom::value, rank); },
      [=](const EvalOrder& order) {
        log->push_back("rank " + std::to_string(rank) + ": eval " + std::to_string(order.step));
        self->send(coordinator, EvalResult{rank, order.step, "", rank == 1, 2.0 + order.step});
      },
      [=](finish_atom) {
        log->push_back("rank " + std::to_string(rank) + ": finish");
        return caf::ok_atom::value;
      },
      [=](const ClusterAbort& abort) {
        log->push_back("rank " + std::to_string(rank) + ": abort: " + abort.reason);
      },
      [](const CheckpointOrder&) { return CheckpointPart{}; },  // no checkpoints in these runs
      [](eval_done_atom, const EvalResult&) {},
  };
}

class CoordinatorTest : public ::testing::Test, public ::test_coordinator_fixture<TestConfig> {
 protected:
  // The test actors never quit on their own: the system does not wait for them at the end.
  CoordinatorTest() { sys.await_actors_before_shutdown(false); }
  // The coordinator re-arms its heartbeat check every second: stopped here, so that the
  // fixture's final run (which fires timeouts) ends.
  void TearDown() override {
    for (const caf::actor& a : actors_) caf::anon_send_exit(a, caf::exit_reason::kill);
    sched.run();
  }
  coordinator_actor Start(CoordinatorOptions options) {
    step_driver_actor driver = sys.spawn(FakeDriver, &log_);
    coordinator_actor coordinator =
        sys.spawn(Coordinator, std::move(options), std::vector<step_driver_actor>{driver});
    actors_.push_back(caf::actor_cast<caf::actor>(driver));
    actors_.push_back(caf::actor_cast<caf::actor>(coordinator));
    return coordinator;
  }
  worker_actor Worker(int rank, const std::string& token, const coordinator_actor& coordinator) {
    worker_actor worker = sys.spawn(FakeWorker, rank, token, coordinator, &log_);
    actors_.push_back(caf::actor_cast<caf::actor>(worker));
    return worker;
  }
  // Every message, no timeouts (the hang and heartbeat checks stay pending).
  void Deliver() { sched.run(); }
  std::vector<caf::actor> actors_;
  Log log_;
};

TEST_F(CoordinatorTest, RunsTheLoopsPhasesInOrderAndFinishesEveryRank) {
  coordinator_actor coordinator = Start(Options());
  Worker(0, "token", coordinator);
  Worker(1, "token", coordinator);
  Deliver();
  const Log expected = {"rank 0: joined", "rank 1: joined", "rank 0: eval 0", "rank 1: eval 0",
                        "driver: step 1", "driver: step 2", "driver: step 3", "rank 0: eval 3",
                        "rank 1: eval 3", "rank 1: finish", "rank 0: finish"};
  EXPECT_EQ(log_, expected);
}

TEST_F(CoordinatorTest, ExitAfterStopsAfterThatStepWithoutTheFinalEvaluation) {
  CoordinatorOptions o = Options();
  o.loop.exit_after = 2;
  coordinator_actor coordinator = Start(o);
  Worker(0, "token", coordinator);
  Worker(1, "token", coordinator);
  Deliver();
  const Log expected = {"rank 0: joined", "rank 1: joined", "rank 0: eval 0", "rank 1: eval 0",
                        "driver: step 1", "driver: step 2", "rank 1: finish", "rank 0: finish"};
  EXPECT_EQ(log_, expected);
}

TEST_F(CoordinatorTest, JoinWithAWrongTokenIsRefused) {
  coordinator_actor coordinator = Start(Options());
  Worker(1, "wrong", coordinator);
  Deliver();
  EXPECT_EQ(log_, (Log{"rank 1: refused: wrong join token"}));
}

// The Gloo rendezvous entries (control_plane_store.h): an actor that is not a joined rank's
// worker can neither set nor read one.
TEST_F(CoordinatorTest, RendezvousEntriesAreRefusedToActorsThatAreNotAJoinedRanksWorker) {
  coordinator_actor coordinator = Start(Options());
  Worker(0, "token", coordinator);
  Deliver();
  Log* log = &log_;
  auto stranger = sys.spawn([=](caf::event_based_actor* self) {
    self->request(coordinator, caf::infinite, store_set_atom::value, 0, std::string("dp.s0/0"),
                  std::string("address"))
        .then([=](const std::string& refusal) { log->push_back("set: " + refusal); });
    self->request(coordinator, caf::infinite, store_get_atom::value, 0, std::string("dp.s0/0"))
        .then([=](bool found, const std::string&) {
          log->push_back(found ? "get: found" : "get: not found");
        });
  });
  actors_.push_back(stranger);
  Deliver();
  EXPECT_NE(std::find(log_.begin(), log_.end(), "get: not found"), log_.end())
      << ::testing::PrintToString(log_);
  bool refused = false;
  for (const std::string& line : log_) {
    refused |= line.rfind("set: refused a rendezvous entry for rank 0 from", 0) == 0 &&
               line.find("not that rank's worker") != std::string::npos;
  }
  EXPECT_TRUE(refused) << ::testing::PrintToString(log_);
}

TEST_F(CoordinatorTest, RankLostMidRunStopsTheOthersNamingIt) {
  coordinator_actor coordinator = Start(Options());
  Worker(0, "token", coordinator);
  worker_actor rank1 = Worker(1, "token", coordinator);
  // Up to the held-out pass before training: both joined and ready, rank 0 has answered.
  while (std::find(log_.begin(), log_.end(), "rank 0: eval 0") == log_.end() &&
         sched.try_run_once()) {
  }
  caf::anon_send_exit(rank1, caf::exit_reason::kill);
  Deliver();
  bool aborted = false;
  for (const std::string& line : log_) {
    aborted |= line.rfind("rank 0: abort: rank 1 (host host, pid 101) was lost", 0) == 0;
    EXPECT_EQ(line.find("finish"), std::string::npos) << line;
  }
  EXPECT_TRUE(aborted) << ::testing::PrintToString(log_);
}

}  // namespace
}  // namespace stagehand::actors::cluster
