// Deterministic tests of the step protocol's actors, one at a time, on CAF's test
// coordinator (one message at a time, timeouts only when the test fires them): the
// StepDriver, the StageActor, the MicrobatchActor and the CommActor each get messages from
// the test and send to Recorders, whose inboxes the test checks. Lanes run inline and the
// work is arithmetic, so every payload is known. Not a pipeline test: pipeline_test and
// deterministic_step_test run the actors together.
#define CAF_TEST_NO_MAIN
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "actors/comm_actor.h"
#include "actors/interfaces.h"
#include "actors/lane.h"
#include "actors/messages.h"
#include "actors/microbatch_actor.h"
#include "actors/stage_actor.h"
#include "actors/step_driver.h"
#include "actors/testing/actor_fixture.h"
#include "actors/testing/recorder.h"
#include "caf/test/unit_test_impl.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/planner.h"

namespace stagehand::actors {
namespace {

using runtime::ActionKind;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::Received;
using testing::Recorder;

using testing::TwoStages;

// Known arithmetic in place of a model: F doubles its input (chunk 0 starts from {1, 2});
// the last chunk's loss is the sum of its input plus the microbatch; I and B add one to the
// gradient (the last chunk starts from {0.5, 0.5}); each call is logged.
class ArithmeticWork : public runtime::StageWork {
 public:
  explicit ArithmeticWork(int last_chunk) : last_chunk_(last_chunk) {}
  void BeginStep(int64_t step, int) override { log.push_back("begin " + std::to_string(step)); }
  absl::Status Forward(int chunk, int mb, const runtime::Payload* input, runtime::Payload* output,
                       double* loss) override {
    log.push_back("F c" + std::to_string(chunk) + " mb" + std::to_string(mb));
    if (fail_forward) return absl::InternalError("the forward broke");
    runtime::Payload x = input ? *input : runtime::Payload{1, 2};
    if (chunk == last_chunk_) {
      *loss = mb;
      for (float v : x) *loss += v;
      return absl::OkStatus();
    }
    for (float& v : x) v *= 2;
    *output = std::move(x);
    return absl::OkStatus();
  }
  absl::Status BackwardInput(int chunk, int mb, const runtime::Payload* grad,
                             runtime::Payload* input_grad) override {
    log.push_back("I c" + std::to_string(chunk) + " mb" + std::to_string(mb));
    *input_grad = PlusOne(grad);
    return absl::OkStatus();
  }
  absl::Status BackwardWeights(int chunk, int mb) override {
    log.push_back("W c" + std::to_string(chunk) + " mb" + std::to_string(mb));
    return absl::OkStatus();
  }
  absl::Status Backward(int chunk, int mb, const runtime::Payload* grad,
                        runtime::Payload* input_grad) override {
    log.push_back("B c" + std::to_string(chunk) + " mb" + std::to_string(mb));
    if (chunk > 0) *input_grad = PlusOne(grad);
    return absl::OkStatus();
  }
  runtime::TiedGradientMap TiedGradients() override {
    log.push_back("tied");
    return {{last_chunk_, {{"wte", {3, 4}}}}};
  }
  void SetTiedGradients(const runtime::TiedGradientMap& sums) override {
    log.push_back("set tied " + std::to_string(sums.at(last_chunk_).at("wte").at(0)));
  }
  std::map<int, std::vector<double>> SquaredNorms() override {
    log.push_back("norms");
    return {{last_chunk_, {25.0}}};
  }
  void ApplyOptimizer(double clip_scale, int step) override {
    log.push_back("optimizer " + std::to_string(clip_scale) + " step " + std::to_string(step));
  }
  std::map<int, std::vector<std::string>> GradientNames() override {
    return {{last_chunk_, {"wte"}}};
  }
  void DiscardGradients() override { log.push_back("discard"); }

  std::vector<std::string> log;
  bool fail_forward = false;

 private:
  static runtime::Payload PlusOne(const runtime::Payload* grad) {
    runtime::Payload g = grad ? *grad : runtime::Payload{0.5, 0.5};
    for (float& v : g) v += 1;
    return g;
  }
  int last_chunk_;
};

// Where a tensor goes, as one line: "F s0->s1 c1 mb1" (" local" when it stays on its stage).
std::string Route(const TensorMessage& m) {
  return absl::StrCat(runtime::ActionKindName(m.kind), " s", m.from_stage, "->s", m.to_stage, " c",
                      m.chunk, " mb", m.microbatch, m.local ? " local" : "");
}

class ActorsTest : public testing::ActorFixture<testing::ConfigWith<RegisterMessageTypes>> {
 protected:
  Lane lane_{Lane::Mode::kInline};
};

// --- StepDriver ---

class StepDriverTest : public ActorsTest {
 protected:
  StepDriverTest() {
    driver_ = Keep(sys.spawn(StepDriver, TwoStages(), /*grad_clip=*/1.0, runtime::RerunOptions{},
                             std::vector<int>{}));
    caf::anon_send(driver_, std::vector<stage_control>{Record<stage_control>(stage_[0]),
                                                       Record<stage_control>(stage_[1])});
    self->send(driver_, step_atom::value, int64_t{3});
    Deliver();
  }
  std::optional<StepOutcome> Outcome() { return Answer<StepOutcome>(); }
  step_driver_actor driver_;
  std::shared_ptr<Received> stage_[2];
};

TEST_F(StepDriverTest, StartsEveryStageThenRunsTheOptimizerPhasesInOrder) {
  for (const auto& stage : stage_) {
    ASSERT_EQ(stage->messages.size(), 1u);
    std::optional<caf::message> start = stage->Nth<start_atom, int64_t>();
    ASSERT_TRUE(start.has_value());
    EXPECT_EQ(start->get_as<int64_t>(1), 3);
  }
  caf::anon_send(driver_, StageDone{0, {}, 0.5, ""});
  caf::anon_send(driver_, StageDone{1, {2.0, 4.0}, 0.25, ""});
  Deliver();
  for (const auto& stage : stage_) EXPECT_EQ(stage->Count<tied_atom>(), 1);

  // Tied gradients: every holder gets the sum of every holder's.
  caf::anon_send(driver_, TiedGradients{0, {{0, {{"wte", {1, 2}}}}}});
  EXPECT_EQ((stage_[0]->Count<tied_atom, TiedGradients>()), 0);
  caf::anon_send(driver_, TiedGradients{1, {{1, {{"wte", {10, 20}}}}}});
  Deliver();
  for (int s = 0; s < 2; ++s) {
    std::optional<caf::message> sums = stage_[s]->Nth<tied_atom, TiedGradients>();
    ASSERT_TRUE(sums.has_value()) << "stage " << s;
    const TiedGradients& got = sums->get_as<TiedGradients>(1);
    EXPECT_EQ(got.stage, s);
    EXPECT_THAT(got.grads.at(s).at("wte"), ElementsAre(11, 22));
  }

  // Norms 3 and 4: the global norm is 5, clipped to 1.
  caf::anon_send(driver_, SquaredNorms{0, {{0, {9.0}}}});
  caf::anon_send(driver_, SquaredNorms{1, {{1, {16.0}}}});
  Deliver();
  for (const auto& stage : stage_) {
    std::optional<caf::message> optim = stage->Nth<optim_atom, double, int>();
    ASSERT_TRUE(optim.has_value());
    EXPECT_NEAR(optim->get_as<double>(1), 0.2, 1e-5);
    EXPECT_EQ(optim->get_as<int>(2), 3);
  }
  EXPECT_FALSE(Outcome().has_value()) << "answered before every stage applied its update";

  caf::anon_send(driver_, OptimizerDone{0});
  caf::anon_send(driver_, OptimizerDone{1});
  Deliver();
  std::optional<StepOutcome> outcome = Outcome();
  ASSERT_TRUE(outcome.has_value());
  EXPECT_EQ(outcome->error, "");
  EXPECT_DOUBLE_EQ(outcome->loss, 3.0);  // the loss stage's mean
  EXPECT_NEAR(outcome->grad_norm, 5.0, 1e-9);
  EXPECT_THAT(outcome->busy_seconds, ElementsAre(0.5, 0.25));
}

TEST_F(StepDriverTest, AStageErrorEndsTheStepWithIt) {
  caf::anon_send(driver_, StageDone{1, {}, 0.0, "stage 1: s1 F c1 mb0 failed: boom"});
  Deliver();
  std::optional<StepOutcome> outcome = Outcome();
  ASSERT_TRUE(outcome.has_value());
  EXPECT_EQ(outcome->error, "stage 1: s1 F c1 mb0 failed: boom");
  EXPECT_EQ(stage_[0]->Count<tied_atom>(), 0);
}

TEST_F(StepDriverTest, AStallIsConfirmedByAProbeWaveThenReported) {
  caf::anon_send(driver_, StageStatus{0, 0, true, false, 1, 0, ""});
  caf::anon_send(driver_, StageStatus{1, 0, true, false, 0, 1, ""});
  Deliver();
  for (const auto& stage : stage_) {
    std::optional<caf::message> probe = stage->Nth<probe_atom, int>();
    ASSERT_TRUE(probe.has_value());
    EXPECT_EQ(probe->get_as<int>(1), 1);
  }
  EXPECT_FALSE(Outcome().has_value()) << "reported before the probe confirmed it";
  caf::anon_send(driver_, StageStatus{0, 1, true, false, 1, 0, "s0 waits for the gradient of mb0"});
  caf::anon_send(driver_, StageStatus{1, 1, true, false, 0, 1, "s1 waits for the input of mb1"});
  Deliver();
  std::optional<StepOutcome> outcome = Outcome();
  ASSERT_TRUE(outcome.has_value());
  EXPECT_THAT(outcome->error, HasSubstr("step 3 stalled"));
  EXPECT_THAT(outcome->error, HasSubstr("s0 waits for the gradient of mb0"));
  EXPECT_THAT(outcome->error, HasSubstr("s1 waits for the input of mb1"));
}

TEST_F(StepDriverTest, ProgressBetweenTheProbeWavesIsNotAStall) {
  caf::anon_send(driver_, StageStatus{0, 0, true, false, 1, 0, ""});
  caf::anon_send(driver_, StageStatus{1, 0, true, false, 0, 1, ""});
  Deliver();
  caf::anon_send(driver_, StageStatus{0, 1, true, false, 1, 0, "waiting"});
  caf::anon_send(driver_, StageStatus{1, 1, true, false, 1, 1, "waiting"});  // it sent one more
  Deliver();
  EXPECT_FALSE(Outcome().has_value());
}

// --- MicrobatchActor ---

class MicrobatchActorTest : public ActorsTest {
 protected:
  // Chunk `chunk` of two, microbatch 1, on stage `chunk`.
  microbatch_actor Spawn(int chunk) {
    MicrobatchActorInit init{
        chunk,  chunk,  1,      Record<stage_actor>(stage_), Record<tensor_inbox>(comm_),
        &lane_, &work_, nullptr};
    return Keep(sys.spawn(MicrobatchActor, init));
  }
  ArithmeticWork work_{/*last_chunk=*/1};
  std::shared_ptr<Received> stage_, comm_;
};

TEST_F(MicrobatchActorTest, RunsItsActionOnTheLaneAndReportsToItsStage) {
  microbatch_actor mb = Spawn(1);
  caf::anon_send(mb, TensorMessage{ActionKind::kForward, 0, 1, 1, 1, false, {3, 4}});
  caf::anon_send(mb, run_atom::value, ActionKind::kForward, uint64_t{0});
  Deliver();
  EXPECT_THAT(work_.log, ElementsAre("F c1 mb1"));
  std::optional<ComputeDone> done = stage_->Only<ComputeDone>();
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->kind, ActionKind::kForward);
  EXPECT_EQ(done->chunk, 1);
  EXPECT_EQ(done->microbatch, 1);
  EXPECT_DOUBLE_EQ(done->loss, 8.0);  // 3 + 4 + microbatch 1
  EXPECT_EQ(done->error, "");
  EXPECT_TRUE(comm_->messages.empty());
}

TEST_F(MicrobatchActorTest, ShipsItsOutputOverTheTransferLaneOrToItsOwnStage) {
  microbatch_actor mb = Spawn(0);
  caf::anon_send(mb, run_atom::value, ActionKind::kForward, uint64_t{0});
  Deliver();  // the stage orders the shipment once it heard the action finish
  caf::anon_send(mb, ship_atom::value, ShipOrder{ActionKind::kForward, 1, 1, false});
  Deliver();
  std::optional<TensorMessage> sent = comm_->Only<TensorMessage>();
  ASSERT_TRUE(sent.has_value());
  EXPECT_EQ(Route(*sent), "F s0->s1 c1 mb1");
  EXPECT_THAT(sent->payload, ElementsAre(2, 4));

  // A backward's output for a chunk on the same stage goes to the stage, not the lane.
  caf::anon_send(mb, TensorMessage{ActionKind::kBackwardInput, 0, 0, 0, 1, true, {1, 1}});
  caf::anon_send(mb, run_atom::value, ActionKind::kBackwardInput, uint64_t{1});
  Deliver();
  caf::anon_send(mb, ship_atom::value, ShipOrder{ActionKind::kBackwardInput, 0, 5, true});
  Deliver();
  EXPECT_EQ(comm_->Count<TensorMessage>(), 1);
  std::optional<TensorMessage> local = stage_->Only<TensorMessage>();
  ASSERT_TRUE(local.has_value());
  EXPECT_EQ(Route(*local), "I s0->s0 c5 mb1 local");
  EXPECT_THAT(local->payload, ElementsAre(2, 2));
}

TEST_F(MicrobatchActorTest, AFailedActionIsReportedWithItsError) {
  work_.fail_forward = true;
  microbatch_actor mb = Spawn(0);
  caf::anon_send(mb, run_atom::value, ActionKind::kForward, uint64_t{0});
  Deliver();
  std::optional<ComputeDone> done = stage_->Only<ComputeDone>();
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->error, "the forward broke");
}

// --- StageActor ---

class StageActorTest : public ActorsTest {
 protected:
  // Stage 1 (the last) of 1F1B with P=2, M=2.
  stage_actor Spawn() {
    auto planner = runtime::PlannerRegistry::Default().Get("1f1b");
    EXPECT_TRUE(planner.ok());
    runtime::PlannerOptions options;
    options.num_stages = 2;
    options.num_microbatches = 2;
    absl::StatusOr<runtime::StepSpec> spec = (*planner)->MakeSpec(options);
    EXPECT_TRUE(spec.ok()) << spec.status();
    StageActorInit init{1,
                        *spec,
                        *planner,
                        &lane_,
                        &work_,
                        Record<stage_reports>(driver_),
                        Record<tensor_inbox>(comm_),
                        nullptr};
    return Keep(sys.spawn(StageActor, init));
  }
  static TensorMessage Activation(int mb) {
    return TensorMessage{ActionKind::kForward, 0, 1, 1, mb, false, {3, 4}};
  }
  ArithmeticWork work_{/*last_chunk=*/1};
  std::shared_ptr<Received> driver_, comm_;
};

TEST_F(StageActorTest, RunsWhatThePlannerPicksAndShipsTheGradientBack) {
  stage_actor stage = Spawn();
  caf::anon_send(stage, start_atom::value, int64_t{1});
  Deliver();
  // Nothing to run before an activation arrives: blocked, and the driver is told.
  std::optional<StageStatus> blocked = driver_->Only<StageStatus>();
  ASSERT_TRUE(blocked.has_value());
  EXPECT_EQ(blocked->stage, 1);
  EXPECT_TRUE(blocked->blocked);
  EXPECT_EQ(blocked->received, 0);

  caf::anon_send(stage, Activation(0));
  Deliver();
  EXPECT_THAT(work_.log, ElementsAre("begin 1", "F c1 mb0", "B c1 mb0"));
  std::optional<TensorMessage> grad = comm_->Only<TensorMessage>();
  ASSERT_TRUE(grad.has_value());
  EXPECT_EQ(Route(*grad), "I s1->s0 c0 mb0");
  EXPECT_THAT(grad->payload, ElementsAre(1.5, 1.5));

  caf::anon_send(stage, Activation(1));
  Deliver();
  std::optional<StageDone> done = driver_->Only<StageDone>();
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->error, "");
  EXPECT_THAT(done->losses, ElementsAre(7.0, 8.0));
  EXPECT_EQ(comm_->Count<TensorMessage>(), 2);
}

// The cluster's race (s1 InputArrived: duplicate activation for c1 mb0): a stage's start
// comes from its gate, its inputs from its comm actor, and CAF orders messages per sender
// only, so the next step's first activation can reach the stage before that step's start.
TEST_F(StageActorTest, AnInputOfTheNextStepThatOvertakesItsStartWaitsForIt) {
  stage_actor stage = Spawn();
  caf::anon_send(stage, start_atom::value, int64_t{1});
  caf::anon_send(stage, Activation(0));
  caf::anon_send(stage, Activation(1));
  Deliver();
  std::optional<StageDone> first = driver_->Only<StageDone>();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->error, "");
  driver_->messages.clear();
  work_.log.clear();

  caf::anon_send(stage, Activation(0));  // step 2's, before step 2's start
  Deliver();
  EXPECT_EQ(driver_->Count<StageDone>(), 0) << "the step-2 input was taken for step 1's";
  EXPECT_TRUE(work_.log.empty());

  caf::anon_send(stage, start_atom::value, int64_t{2});
  Deliver();
  EXPECT_THAT(work_.log, ElementsAre("begin 2", "F c1 mb0", "B c1 mb0"));
  caf::anon_send(stage, Activation(1));
  Deliver();
  std::optional<StageDone> second = driver_->Only<StageDone>();
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->error, "");
  EXPECT_THAT(second->losses, ElementsAre(7.0, 8.0));
}

TEST_F(StageActorTest, AnInputBeforeTheFirstStartWaitsForIt) {
  stage_actor stage = Spawn();
  caf::anon_send(stage, Activation(1));
  Deliver();
  EXPECT_TRUE(work_.log.empty());
  caf::anon_send(stage, start_atom::value, int64_t{1});
  caf::anon_send(stage, Activation(0));
  Deliver();
  std::optional<StageDone> done = driver_->Only<StageDone>();
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->error, "");
  EXPECT_THAT(done->losses, ElementsAre(7.0, 8.0));
}

TEST_F(StageActorTest, RunsTheOptimizerPhasesOnItsLaneAndAnswersEach) {
  stage_actor stage = Spawn();
  caf::anon_send(stage, tied_atom::value);
  caf::anon_send(stage, tied_atom::value, TiedGradients{1, {{1, {{"wte", {9, 9}}}}}});
  caf::anon_send(stage, optim_atom::value, 0.5, 4);
  Deliver();
  EXPECT_THAT(work_.log,
              ElementsAre("tied", "set tied 9.000000", "norms", "optimizer 0.500000 step 4"));
  std::optional<TiedGradients> tied = driver_->Only<TiedGradients>();
  ASSERT_TRUE(tied.has_value());
  EXPECT_EQ(tied->stage, 1);
  EXPECT_THAT(tied->grads.at(1).at("wte"), ElementsAre(3, 4));
  std::optional<SquaredNorms> norms = driver_->Only<SquaredNorms>();
  ASSERT_TRUE(norms.has_value());
  EXPECT_THAT(norms->norms.at(1), ElementsAre(25.0));
  std::optional<OptimizerDone> optimized = driver_->Only<OptimizerDone>();
  ASSERT_TRUE(optimized.has_value());
  EXPECT_EQ(optimized->stage, 1);
}

TEST_F(StageActorTest, ATensorForAChunkItDoesNotHoldFailsTheStepNamingIt) {
  stage_actor stage = Spawn();
  caf::anon_send(stage, start_atom::value, int64_t{1});
  caf::anon_send(stage, TensorMessage{ActionKind::kForward, 0, 1, 0, 1, false, {1}});
  Deliver();
  std::optional<StageDone> done = driver_->Only<StageDone>();
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->error,
            "stage 1: received a tensor for chunk 0 microbatch 1 from stage 0, which this stage "
            "does not hold");
}

TEST_F(StageActorTest, AnswersAProbeWithWhatItWaitsFor) {
  stage_actor stage = Spawn();
  caf::anon_send(stage, start_atom::value, int64_t{1});
  caf::anon_send(stage, probe_atom::value, 7);
  Deliver();
  std::optional<StageStatus> answer = driver_->Only<StageStatus>(1);  // after the blocked one
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(answer->wave, 7);
  EXPECT_TRUE(answer->blocked);
  EXPECT_FALSE(answer->waiting.empty());
}

// --- CommActor ---

class CommActorTest : public ActorsTest {
 protected:
  comm_actor Spawn(LinkModel link) {
    comm_actor comm = Keep(sys.spawn(CommActor, link, nullptr));
    caf::anon_send(comm, std::vector<tensor_inbox>{Record<tensor_inbox>(stage_[0]),
                                                   Record<tensor_inbox>(stage_[1])});
    return comm;
  }
  std::shared_ptr<Received> stage_[2];
};

TEST_F(CommActorTest, DeliversToTheDestinationStageAtOnceWithoutALinkModel) {
  comm_actor comm = Spawn(LinkModel{});
  caf::anon_send(comm, TensorMessage{ActionKind::kForward, 0, 1, 1, 0, false, {1, 2}});
  Deliver();
  EXPECT_TRUE(stage_[0]->messages.empty());
  std::optional<TensorMessage> got = stage_[1]->Only<TensorMessage>();
  ASSERT_TRUE(got.has_value());
  EXPECT_THAT(got->payload, ElementsAre(1, 2));
}

TEST_F(CommActorTest, ALinkModelDelaysDeliveryInOrder) {
  comm_actor comm = Spawn(LinkModel{/*latency_us=*/1000, /*gbps=*/1});
  caf::anon_send(comm, TensorMessage{ActionKind::kForward, 0, 1, 1, 0, false, {1}});
  caf::anon_send(comm, TensorMessage{ActionKind::kForward, 0, 1, 1, 1, false, {2}});
  Deliver();
  EXPECT_TRUE(stage_[1]->messages.empty()) << "delivered before the link's latency";
  sched.trigger_timeouts();
  Deliver();
  ASSERT_EQ(stage_[1]->Count<TensorMessage>(), 2);
  EXPECT_EQ(stage_[1]->Only<TensorMessage>(0)->microbatch, 0);
  EXPECT_EQ(stage_[1]->Only<TensorMessage>(1)->microbatch, 1);
}

}  // namespace
}  // namespace stagehand::actors
