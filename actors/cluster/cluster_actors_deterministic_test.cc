// Deterministic tests of the cluster's actors, one at a time, on CAF's test coordinator: the
// StageGate, the DriverGate, ClusterComm (its paths that need no UCX) and TraceSteps each
// get messages from the test and send to Recorders, whose inboxes the test checks. No
// network, no threads. Not the coordinator's test (coordinator_test) and not a cluster run
// (tools/cluster:cluster_test).
#define CAF_TEST_NO_MAIN
#include <memory>
#include <string>
#include <vector>

#include "actors/cluster/cluster_comm.h"
#include "actors/cluster/cluster_messages.h"
#include "actors/cluster/gates.h"
#include "actors/cluster/trace_steps.h"
#include "actors/testing/actor_fixture.h"
#include "actors/testing/recorder.h"
#include "caf/test/unit_test_impl.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/trace/recorder.h"

namespace stagehand::actors::cluster {
namespace {

using runtime::ActionKind;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::Received;
using ::testing::StartsWith;

using testing::TwoStages;

// The embedding "wte" (tied between chunk 0 and chunk 1) has 6 floats.
constexpr int64_t kWteFloats = 6;

// A comm actor as a gate sees it: answers what it has in flight, records the rest.
caf::behavior PendingAnswerer(caf::event_based_actor* self, std::shared_ptr<Received> received,
                              std::string pending) {
  testing::RecordTheRest(self, std::move(received));
  return {[=](pending_atom) { return pending; }};
}

// Passes every transfer notice on to `comm`, as a peer's comm actor would send it.
caf::behavior NoticeRelay(caf::event_based_actor* self, cluster_comm_actor comm) {
  return {[=](const TransferNotice& n) { self->send(comm, n); }};
}

class ClusterActorsTest
    : public testing::ActorFixture<testing::ConfigWith<RegisterClusterMessageTypes>> {};

// The reason of the one ClusterAbort `to` received.
std::string OnlyAbort(const Received& to) {
  EXPECT_EQ(to.Count<ClusterAbort>(), 1);
  std::optional<ClusterAbort> abort = to.Only<ClusterAbort>();
  return abort ? abort->reason : "";
}

// --- StageGate: stage 1 on rank 1 ---

class StageGateTest : public ClusterActorsTest {
 protected:
  StageGateTest() {
    comm_ = std::make_shared<Received>();
    StageGateInit init{1,
                       1,
                       TwoStages(),
                       kWteFloats,
                       Record<stage_actor>(stage_),
                       caf::actor_cast<cluster_comm_actor>(
                           Keep(sys.spawn(PendingAnswerer, comm_, "receiving gradient c1 mb0"))),
                       Record<driver_gate_actor>(driver_gate_),
                       Record<abort_inbox>(supervisor_),
                       trace_steps_actor{}};
    gate_ = Keep(sys.spawn(StageGate, init));
  }
  std::string Refusal() { return OnlyAbort(*supervisor_); }
  stage_gate_actor gate_;
  std::shared_ptr<Received> stage_, comm_, driver_gate_, supervisor_;
};

TEST_F(StageGateTest, PassesTheStartToItsCommThenItsStage) {
  caf::anon_send(gate_, start_atom::value, int64_t{4});
  Deliver();
  EXPECT_EQ((comm_->Count<start_atom, int64_t>()), 1);
  std::optional<caf::message> start = stage_->Nth<start_atom, int64_t>();
  ASSERT_TRUE(start.has_value());
  EXPECT_EQ(start->get_as<int64_t>(1), 4);
  EXPECT_TRUE(supervisor_->messages.empty());
}

TEST_F(StageGateTest, RefusesAStartThatDoesNotAdvanceTheStep) {
  caf::anon_send(gate_, start_atom::value, int64_t{2});
  caf::anon_send(gate_, start_atom::value, int64_t{2});
  Deliver();
  EXPECT_EQ((stage_->Count<start_atom, int64_t>()), 1);
  EXPECT_EQ(Refusal(),
            "rank 1 stage 1: refused a driver message from an anonymous sender: start of step 2 "
            "after step 2");
}

TEST_F(StageGateTest, RefusesTiedGradientsForAnotherStageOrOfAnotherShape) {
  caf::anon_send(gate_, tied_atom::value, TiedGradients{0, {{1, {{"wte", {1, 2, 3, 4, 5, 6}}}}}});
  Deliver();
  EXPECT_THAT(Refusal(), HasSubstr("tied gradients addressed to stage 0"));
  supervisor_->messages.clear();
  caf::anon_send(gate_, tied_atom::value, TiedGradients{1, {{1, {{"wte", {1, 2, 3}}}}}});
  Deliver();
  EXPECT_THAT(Refusal(), HasSubstr("tied gradients: "));
  EXPECT_EQ((stage_->Count<tied_atom, TiedGradients>()), 0);

  supervisor_->messages.clear();
  caf::anon_send(gate_, tied_atom::value, TiedGradients{1, {{1, {{"wte", {1, 2, 3, 4, 5, 6}}}}}});
  caf::anon_send(gate_, tied_atom::value);
  Deliver();
  EXPECT_TRUE(supervisor_->messages.empty());
  EXPECT_EQ((stage_->Count<tied_atom, TiedGradients>()), 1);
  EXPECT_EQ(stage_->Count<tied_atom>(), 1);
}

TEST_F(StageGateTest, RefusesAnOptimizerOrderForAnotherStepOrANegativeScale) {
  caf::anon_send(gate_, start_atom::value, int64_t{1});
  caf::anon_send(gate_, optim_atom::value, 0.5, 2);
  Deliver();
  EXPECT_THAT(Refusal(), HasSubstr("optimizer order for step 2 scale 0.5 during step 1"));
  supervisor_->messages.clear();
  caf::anon_send(gate_, optim_atom::value, -1.0, 1);
  Deliver();
  EXPECT_THAT(Refusal(), HasSubstr("optimizer order for step 1 scale -1 during step 1"));
  EXPECT_EQ((stage_->Count<optim_atom, double, int>()), 0);

  supervisor_->messages.clear();
  caf::anon_send(gate_, optim_atom::value, 0.5, 1);
  Deliver();
  EXPECT_TRUE(supervisor_->messages.empty());
  EXPECT_EQ((stage_->Count<optim_atom, double, int>()), 1);
}

TEST_F(StageGateTest, AHangProbeAlsoReportsTheCommsTransfersToTheDriverGate) {
  caf::anon_send(gate_, probe_atom::value, 3);  // the driver's own stall probe: passed on only
  Deliver();
  EXPECT_TRUE(driver_gate_->messages.empty());
  caf::anon_send(gate_, probe_atom::value, kHangProbeWave);
  Deliver();
  EXPECT_EQ((stage_->Count<probe_atom, int>()), 2);
  std::optional<StageReport> report = driver_gate_->Only<StageReport>();
  ASSERT_TRUE(report.has_value());
  EXPECT_EQ(report->rank, 1);
  EXPECT_EQ(report->stage, 1);
  EXPECT_EQ(report->text, "receiving gradient c1 mb0");
}

// --- DriverGate ---

class DriverGateTest : public ClusterActorsTest {
 protected:
  DriverGateTest() {
    gate_ = Keep(sys.spawn(DriverGate,
                           DriverGateInit{TwoStages(), kWteFloats, Record<stage_reports>(driver_),
                                          Record<coordinator_actor>(coordinator_)}));
  }
  std::string Refusal() { return OnlyAbort(*coordinator_); }
  driver_gate_actor gate_;
  std::shared_ptr<Received> driver_, coordinator_;
};

TEST_F(DriverGateTest, PassesWellFormedStageMessagesToTheDriver) {
  caf::anon_send(gate_, StageStatus{1, 2, true, false, 3, 4, ""});
  caf::anon_send(gate_, StageDone{1, {1.0, 2.0}, 0.5, ""});
  caf::anon_send(gate_, TiedGradients{0, {{0, {{"wte", {1, 2, 3, 4, 5, 6}}}}}});
  caf::anon_send(gate_, SquaredNorms{1, {{1, {4.0, 9.0}}}});
  caf::anon_send(gate_, OptimizerDone{1});
  Deliver();
  EXPECT_TRUE(coordinator_->messages.empty());
  ASSERT_EQ(driver_->messages.size(), 5u);
  EXPECT_EQ(driver_->Only<StageStatus>()->sent, 3);
  EXPECT_THAT(driver_->Only<StageDone>()->losses, ElementsAre(1.0, 2.0));
  EXPECT_EQ(driver_->Only<TiedGradients>()->stage, 0);
  EXPECT_THAT(driver_->Only<SquaredNorms>()->norms.at(1), ElementsAre(4.0, 9.0));
  EXPECT_EQ(driver_->Only<OptimizerDone>()->stage, 1);
}

TEST_F(DriverGateTest, HangProbeAnswersAndStageReportsGoToTheCoordinator) {
  caf::anon_send(gate_, StageStatus{0, kHangProbeWave, true, false, 0, 0, "s0 waits for I c0 mb1"});
  caf::anon_send(gate_, StageReport{1, 1, "sending activation"});
  Deliver();
  EXPECT_TRUE(driver_->messages.empty());
  ASSERT_EQ(coordinator_->Count<StageReport>(), 2);
  EXPECT_EQ(coordinator_->Only<StageReport>(0)->rank, -1);
  EXPECT_EQ(coordinator_->Only<StageReport>(0)->text, "s0 waits for I c0 mb1");
  EXPECT_EQ(coordinator_->Only<StageReport>(1)->text, "sending activation");
}

TEST_F(DriverGateTest, RefusesAStageOutOfRangeNamingTheSender) {
  caf::anon_send(gate_, OptimizerDone{2});
  Deliver();
  EXPECT_EQ(Refusal(),
            "driver refused OptimizerDone from an anonymous sender: stage 2 out of range [0, 2)");
  EXPECT_TRUE(driver_->messages.empty());
}

TEST_F(DriverGateTest, RefusesALossStageDoneWithoutALossPerMicrobatch) {
  caf::anon_send(gate_, StageDone{1, {1.0}, 0.5, ""});
  Deliver();
  EXPECT_EQ(Refusal(),
            "driver refused a StageDone of stage 1 from an anonymous sender: 1 losses for 2 "
            "microbatches");
  EXPECT_TRUE(driver_->messages.empty());
}

TEST_F(DriverGateTest, RefusesTiedGradientsOfAnotherShapeAndBadNorms) {
  caf::anon_send(gate_, TiedGradients{1, {{1, {{"wte", {1}}}}}});
  Deliver();
  EXPECT_THAT(Refusal(), StartsWith("driver refused TiedGradients of stage 1"));
  coordinator_->messages.clear();
  caf::anon_send(gate_, SquaredNorms{0, {{0, {-1.0}}}});
  Deliver();
  EXPECT_THAT(Refusal(), StartsWith("driver refused SquaredNorms of stage 0"));
  EXPECT_TRUE(driver_->messages.empty());
}

// --- ClusterComm: stage 0 on rank 0; stage 1 on rank 1 ---

class ClusterCommTest : public ClusterActorsTest {
 protected:
  ClusterCommTest() {
    ClusterCommInit init;
    init.rank = 0;
    init.stage = 0;
    init.spec = TwoStages();
    init.tensor_floats = 4;
    init.supervisor = Record<abort_inbox>(supervisor_);
    comm_ = Keep(sys.spawn(ClusterComm, init));
    peer_ = caf::actor_cast<cluster_comm_actor>(Keep(sys.spawn(NoticeRelay, comm_)));
    caf::anon_send(comm_, std::vector<stage_actor>{Record<stage_actor>(stage_), stage_actor{}});
    caf::anon_send(comm_, PeerTable{{0, 1}, {comm_, peer_}, {"", ""}});
    Deliver();
  }
  // A gradient for chunk 0, microbatch 1, from stage 1 (rank 1) in step `step`.
  static TransferNotice Gradient(int64_t step) {
    return TransferNotice{step, 1, 9, 4, ActionKind::kBackwardInput, 1, 0, 0, 1};
  }
  std::string Refusal() { return OnlyAbort(*supervisor_); }
  cluster_comm_actor comm_, peer_;
  std::shared_ptr<Received> stage_, supervisor_;
};

TEST_F(ClusterCommTest, RefusesANoticeFromAnActorOtherThanThePeersComm) {
  caf::anon_send(comm_, start_atom::value, int64_t{1});
  caf::anon_send(comm_, Gradient(1));
  Deliver();
  EXPECT_EQ(Refusal(),
            "rank 0 stage 0: bad transfer notice from rank 1 (anonymous): the sender is not the "
            "comm actor of stage 1");
}

// --seq_len_policy=variable (rows of 2 floats, at most 4): a size that is not whole tokens
// stops the run with an error naming the sender's rank and stage.
TEST_F(ClusterCommTest, RefusesAVariableLengthNoticeOfABadSizeNamingTheSender) {
  ClusterCommInit init;
  init.rank = 0;
  init.stage = 0;
  init.spec = TwoStages();
  init.tensor_floats = 4;
  init.row_floats = 2;
  init.supervisor = Record<abort_inbox>(supervisor_);
  cluster_comm_actor comm = Keep(sys.spawn(ClusterComm, init));
  cluster_comm_actor peer = caf::actor_cast<cluster_comm_actor>(Keep(sys.spawn(NoticeRelay, comm)));
  caf::anon_send(comm, std::vector<stage_actor>{Record<stage_actor>(stage_), stage_actor{}});
  caf::anon_send(comm, PeerTable{{0, 1}, {comm, peer}, {"", ""}});
  caf::anon_send(comm, start_atom::value, int64_t{1});
  TransferNotice bad = Gradient(1);
  bad.floats = 3;
  caf::anon_send(peer, bad);
  Deliver();
  const std::string refusal = Refusal();
  EXPECT_THAT(refusal, StartsWith("rank 0 stage 0: bad transfer notice from rank 1 ("));
  EXPECT_THAT(refusal,
              ::testing::EndsWith(
                  "): 3 floats are not a whole number of tokens of 2 floats (B * d_model)"));
}

TEST_F(ClusterCommTest, RefusesANoticeForAStepOtherThanThisOrTheNext) {
  caf::anon_send(comm_, start_atom::value, int64_t{1});
  caf::anon_send(peer_, Gradient(3));
  Deliver();
  EXPECT_EQ(Refusal(),
            "rank 0 stage 0: transfer notice for step 3 during step 1: gradient c0 mb1 s1->s0 "
            "(from rank 1, 16 bytes, tag 9, step 3)");
}

TEST_F(ClusterCommTest, RefusesATensorForAStageOutOfRange) {
  caf::anon_send(comm_, TensorMessage{ActionKind::kForward, 0, 2, 2, 0, false, {1, 2, 3, 4}});
  Deliver();
  EXPECT_EQ(Refusal(), "rank 0 stage 0: tensor for stage 2 out of range");
}

TEST_F(ClusterCommTest, AReceivedTensorGoesToItsStageAndAFailedOneStopsTheRun) {
  caf::anon_send(comm_, received_atom::value, uint64_t{9}, std::string(), true,
                 TensorMessage{ActionKind::kBackwardInput, 1, 0, 0, 1, false, {1, 2, 3, 4}});
  Deliver();
  std::optional<TensorMessage> got = stage_->Only<TensorMessage>();
  ASSERT_TRUE(got.has_value());
  EXPECT_THAT(got->payload, ElementsAre(1, 2, 3, 4));
  caf::anon_send(comm_, received_atom::value, uint64_t{10}, std::string("connection reset"), false,
                 TensorMessage{});
  Deliver();
  EXPECT_THAT(Refusal(), HasSubstr("failed: connection reset"));
  EXPECT_EQ(stage_->Count<TensorMessage>(), 1);
}

TEST_F(ClusterCommTest, WithNothingInFlightItSaysSoAndIsDrained) {
  self->send(comm_, pending_atom::value);
  Deliver();
  EXPECT_EQ(Answer<std::string>(), "no transfers in flight");
  self->send(comm_, drained_atom::value);
  Deliver();
  EXPECT_TRUE(Answer<caf::ok_atom>().has_value());
}

// --- TraceSteps: a traced rank holding both stages ---

class TraceStepsTest : public ClusterActorsTest {
 protected:
  TraceStepsTest() {
    EXPECT_TRUE(trace_.Configure(2, 2, 2).ok());
    steps_ =
        Keep(sys.spawn(TraceSteps, TraceStepsInit{&trace_, 2, Record<stage_reports>(driver_)}));
  }
  runtime::trace::TraceRecorder trace_;
  trace_steps_actor steps_;
  std::shared_ptr<Received> driver_;
};

TEST_F(TraceStepsTest, TheFirstGateBeginsTheStepAndTheLastOptimizerDoneEndsIt) {
  self->send(steps_, start_atom::value, int64_t{5});
  self->send(steps_, start_atom::value, int64_t{5});  // the rank's other gate
  Deliver();
  EXPECT_TRUE(Answer<caf::ok_atom>().has_value());
  EXPECT_TRUE(Answer<caf::ok_atom>().has_value());
  EXPECT_EQ(trace_.step(), 5);

  caf::anon_send(steps_, OptimizerDone{0});
  Deliver();
  EXPECT_TRUE(trace_.Collect().steps.empty()) << "ended before the rank's last stage was done";
  caf::anon_send(steps_, OptimizerDone{1});
  Deliver();
  const std::vector<runtime::trace::StepSpan> steps = trace_.Collect().steps;
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0].step, 5);
  EXPECT_EQ(driver_->Count<OptimizerDone>(), 2);
}

TEST_F(TraceStepsTest, PassesEveryOtherStageMessageToTheDriverUnchanged) {
  caf::anon_send(steps_, StageStatus{1, 0, true, false, 1, 2, ""});
  caf::anon_send(steps_, StageDone{1, {3.0, 4.0}, 0.5, ""});
  caf::anon_send(steps_, TiedGradients{0, {}});
  caf::anon_send(steps_, SquaredNorms{1, {}});
  Deliver();
  ASSERT_EQ(driver_->messages.size(), 4u);
  EXPECT_EQ(driver_->Only<StageStatus>()->received, 2);
  EXPECT_THAT(driver_->Only<StageDone>()->losses, ElementsAre(3.0, 4.0));
  EXPECT_EQ(driver_->Only<TiedGradients>()->stage, 0);
  EXPECT_EQ(driver_->Only<SquaredNorms>()->stage, 1);
}

}  // namespace
}  // namespace stagehand::actors::cluster
