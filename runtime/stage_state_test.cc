// Tests of StageState: the dependency rules, local delivery, transfers, inflight counts and
// the waiting report. Not tests of any planner or of the simulator.
#include "runtime/stage_state.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stagehand::runtime {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

StepSpec Spec(int stages, int microbatches, std::vector<int> chunk_to_stage, bool split) {
  StepSpec spec;
  spec.num_stages = stages;
  spec.num_microbatches = microbatches;
  spec.num_chunks = static_cast<int>(chunk_to_stage.size());
  spec.chunk_to_stage = std::move(chunk_to_stage);
  spec.split_backward = split;
  return spec;
}

Action F(int s, int c, int mb) { return Action{s, ActionKind::kForward, c, mb}; }
Action I(int s, int c, int mb) { return Action{s, ActionKind::kBackwardInput, c, mb}; }
Action W(int s, int c, int mb) { return Action{s, ActionKind::kBackwardWeight, c, mb}; }
Action B(int s, int c, int mb) { return Action{s, ActionKind::kBackward, c, mb}; }

// Starts and finishes `action`; returns its transfers.
std::vector<Transfer> RunAction(StageState& state, const Action& action) {
  const absl::Status started = state.Started(action);
  EXPECT_TRUE(started.ok()) << started;
  absl::StatusOr<std::vector<Transfer>> transfers = state.Finished(action);
  EXPECT_TRUE(transfers.ok()) << transfers.status();
  return transfers.ok() ? *transfers : std::vector<Transfer>{};
}

TEST(StageStateTest, FirstChunkForwardsAreReadyAtOnce) {
  StageState state(Spec(2, 2, {0, 1}, false), 0);
  EXPECT_THAT(state.Ready(), ElementsAre(F(0, 0, 0), F(0, 0, 1)));
}

TEST(StageStateTest, ForwardWaitsForItsActivation) {
  StageState state(Spec(2, 2, {0, 1}, false), 1);
  EXPECT_THAT(state.Ready(), IsEmpty());
  ASSERT_TRUE(state.InputArrived(ActionKind::kForward, 1, 1).ok());
  EXPECT_THAT(state.Ready(), ElementsAre(F(1, 1, 1)));
}

TEST(StageStateTest, ForwardSendsTheActivationToTheNextChunksStage) {
  StageState state(Spec(2, 1, {0, 1}, false), 0);
  EXPECT_THAT(RunAction(state, F(0, 0, 0)),
              ElementsAre(Transfer{ActionKind::kSendForward, 0, 1, 1, 0}));
}

TEST(StageStateTest, LastChunkBackwardNeedsOnlyItsForward) {
  StageState state(Spec(2, 1, {0, 1}, false), 1);
  ASSERT_TRUE(state.InputArrived(ActionKind::kForward, 1, 0).ok());
  EXPECT_THAT(RunAction(state, F(1, 1, 0)), IsEmpty());  // the last chunk sends no activation
  EXPECT_THAT(state.Ready(), ElementsAre(B(1, 1, 0)));
  EXPECT_THAT(RunAction(state, B(1, 1, 0)),
              ElementsAre(Transfer{ActionKind::kSendBackward, 1, 0, 0, 0}));
  EXPECT_TRUE(state.Done());
}

TEST(StageStateTest, BackwardWaitsForTheGradientUnlessLastChunk) {
  StageState state(Spec(2, 1, {0, 1}, false), 0);
  RunAction(state, F(0, 0, 0));
  EXPECT_THAT(state.Ready(), IsEmpty());
  ASSERT_TRUE(state.InputArrived(ActionKind::kBackwardInput, 0, 0).ok());
  EXPECT_THAT(state.Ready(), ElementsAre(B(0, 0, 0)));
  EXPECT_THAT(RunAction(state, B(0, 0, 0)), IsEmpty());  // chunk 0 sends no gradient
  EXPECT_TRUE(state.Done());
}

TEST(StageStateTest, NeighbourChunkOnTheSameStageIsDeliveredLocally) {
  // V placement, P = 2: chunks 1 and 2 both live on stage 1.
  StageState state(Spec(2, 1, VPlacement(2), false), 1);
  ASSERT_TRUE(state.InputArrived(ActionKind::kForward, 1, 0).ok());
  EXPECT_THAT(RunAction(state, F(1, 1, 0)), IsEmpty());  // c2 is here: no transfer
  EXPECT_THAT(state.Ready(), ElementsAre(F(1, 2, 0)));
  EXPECT_THAT(RunAction(state, F(1, 2, 0)),
              ElementsAre(Transfer{ActionKind::kSendForward, 1, 0, 3, 0}));
  ASSERT_TRUE(state.InputArrived(ActionKind::kBackwardInput, 2, 0).ok());
  EXPECT_THAT(RunAction(state, B(1, 2, 0)), IsEmpty());  // c1 is here: no transfer
  EXPECT_THAT(state.Ready(), ElementsAre(B(1, 1, 0)));
  EXPECT_THAT(RunAction(state, B(1, 1, 0)),
              ElementsAre(Transfer{ActionKind::kSendBackward, 1, 0, 0, 0}));
  EXPECT_TRUE(state.Done());
}

TEST(StageStateTest, InputFromTheSameStageIsRejected) {
  StageState state(Spec(2, 1, VPlacement(2), false), 1);
  const absl::Status status = state.InputArrived(ActionKind::kForward, 2, 0);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("comes from c1 on this same stage"));
}

TEST(StageStateTest, DuplicateInputIsAnError) {
  StageState state(Spec(2, 2, {0, 1}, false), 1);
  ASSERT_TRUE(state.InputArrived(ActionKind::kForward, 1, 1).ok());
  const absl::Status status = state.InputArrived(ActionKind::kForward, 1, 1);
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(status.message(), HasSubstr("duplicate activation for c1 mb1"));
}

TEST(StageStateTest, InputForAChunkElsewhereIsAnError) {
  StageState state(Spec(3, 2, {0, 1, 2}, false), 1);
  absl::Status status = state.InputArrived(ActionKind::kForward, 2, 0);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("chunk 2 is not on this stage (chunks here: 1)"));
  status = state.InputArrived(ActionKind::kForward, 1, 2);
  EXPECT_THAT(status.message(), HasSubstr("microbatch 2 is not in [0, num_microbatches = 2)"));
  status = state.InputArrived(ActionKind::kBackwardWeight, 1, 0);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
}

TEST(StageStateTest, TransferAddressedElsewhereIsAnError) {
  StageState state(Spec(3, 1, {0, 1, 2}, false), 1);
  EXPECT_TRUE(state.InputArrived(Transfer{ActionKind::kSendForward, 0, 1, 1, 0}).ok());
  const absl::Status status = state.InputArrived(Transfer{ActionKind::kSendForward, 1, 2, 2, 0});
  EXPECT_THAT(status.message(), HasSubstr("is addressed to stage 2"));
}

TEST(StageStateTest, WeightGradientWaitsForInputGradient) {
  StageState state(Spec(1, 1, {0}, true), 0);
  RunAction(state, F(0, 0, 0));
  EXPECT_THAT(state.Ready(), ElementsAre(I(0, 0, 0)));
  const absl::Status early = state.Started(W(0, 0, 0));
  EXPECT_EQ(early.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(early.message(), HasSubstr("s0 W c0 mb0 is not ready: it waits for s0 I c0 mb0"));
  RunAction(state, I(0, 0, 0));
  EXPECT_THAT(state.Ready(), ElementsAre(W(0, 0, 0)));
  EXPECT_EQ(state.inflight(), 1);  // B does not free the activation, W does
  RunAction(state, W(0, 0, 0));
  EXPECT_EQ(state.inflight(), 0);
  EXPECT_TRUE(state.Done());
}

TEST(StageStateTest, KindMustMatchTheBackwardMode) {
  StageState fused(Spec(1, 1, {0}, false), 0);
  RunAction(fused, F(0, 0, 0));
  EXPECT_THAT(fused.Started(I(0, 0, 0)).message(),
              HasSubstr("split_backward is false, so the backward is the fused B"));
  StageState split(Spec(1, 1, {0}, true), 0);
  RunAction(split, F(0, 0, 0));
  EXPECT_THAT(split.Started(B(0, 0, 0)).message(), HasSubstr("split_backward is true"));
}

TEST(StageStateTest, StartedRejectsWhatIsNotReadyOrAlreadyStarted) {
  StageState state(Spec(2, 1, {0, 1}, false), 1);
  absl::Status status = state.Started(F(1, 1, 0));
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(),
              HasSubstr("s1 F c1 mb0 is not ready: it waits for activation from s0 (c0 mb0)"));
  ASSERT_TRUE(state.InputArrived(ActionKind::kForward, 1, 0).ok());
  ASSERT_TRUE(state.Started(F(1, 1, 0)).ok());
  EXPECT_TRUE(state.Running());
  EXPECT_THAT(state.RunningActions(), ElementsAre(F(1, 1, 0)));
  EXPECT_THAT(state.Ready(), IsEmpty());
  EXPECT_THAT(state.Started(F(1, 1, 0)).message(), HasSubstr("has already started"));
  EXPECT_EQ(state.Started(F(0, 0, 0)).code(), absl::StatusCode::kInvalidArgument);
}

TEST(StageStateTest, FinishedRejectsWhatIsNotRunning) {
  StageState state(Spec(1, 1, {0}, false), 0);
  absl::StatusOr<std::vector<Transfer>> finished = state.Finished(F(0, 0, 0));
  EXPECT_EQ(finished.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(finished.status().message(), HasSubstr("never started"));
  RunAction(state, F(0, 0, 0));
  finished = state.Finished(F(0, 0, 0));
  EXPECT_THAT(finished.status().message(), HasSubstr("had already finished"));
}

TEST(StageStateTest, InflightCountsActivationsHeld) {
  StageState state(Spec(1, 3, {0}, false), 0);
  RunAction(state, F(0, 0, 0));
  RunAction(state, F(0, 0, 1));
  ASSERT_TRUE(state.Started(F(0, 0, 2)).ok());
  EXPECT_EQ(state.inflight(), 2);  // a running F holds nothing yet
  ASSERT_TRUE(state.Finished(F(0, 0, 2)).ok());
  EXPECT_EQ(state.inflight(), 3);
  RunAction(state, B(0, 0, 0));
  EXPECT_EQ(state.inflight(), 2);
  RunAction(state, B(0, 0, 1));
  RunAction(state, B(0, 0, 2));
  EXPECT_EQ(state.inflight(), 0);
  EXPECT_EQ(state.peak_inflight(), 3);
  EXPECT_TRUE(state.Done());
}

TEST(StageStateTest, ForwardBeyondMaxInflightIsRefused) {
  StepSpec spec = Spec(1, 3, {0}, false);
  spec.max_inflight = 2;
  StageState state(spec, 0);
  RunAction(state, F(0, 0, 0));
  RunAction(state, F(0, 0, 1));
  const absl::Status status = state.Started(F(0, 0, 2));
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(status.message(), HasSubstr("s0 F c0 mb2 would make stage 0 hold 3 activations, "
                                          "above max_inflight = 2"));
  EXPECT_EQ(state.inflight(), 2);
  RunAction(state, B(0, 0, 0));
  EXPECT_TRUE(state.Started(F(0, 0, 2)).ok());
}

TEST(StageStateTest, DescribeWaitingNamesWhatEachActionWaitsFor) {
  StageState state(Spec(3, 6, {0, 1, 2}, false), 1);
  ASSERT_TRUE(state.InputArrived(ActionKind::kForward, 1, 0).ok());
  ASSERT_TRUE(state.InputArrived(ActionKind::kForward, 1, 1).ok());
  RunAction(state, F(1, 1, 0));
  EXPECT_EQ(state.DescribeWaiting(),
            "s1: ready, not started: F c1 mb1; "
            "s1 B c1 mb0 waits for gradient from s2 (c2 mb0); "
            "s1 F c1 mb2 waits for activation from s0 (c0 mb2); "
            "s1 F c1 mb3 waits for activation from s0 (c0 mb3); +2 more waiting");
  ASSERT_TRUE(state.Started(F(1, 1, 1)).ok());
  EXPECT_THAT(state.DescribeWaiting(), HasSubstr("s1: running F c1 mb1; s1 B c1 mb0 waits"));
}

TEST(StageStateTest, DescribeWaitingSaysDone) {
  StageState state(Spec(1, 1, {0}, false), 0);
  RunAction(state, F(0, 0, 0));
  RunAction(state, B(0, 0, 0));
  EXPECT_EQ(state.DescribeWaiting(), "s0: done");
}

TEST(StageStateTest, CreateChecksTheSpecAndStage) {
  EXPECT_EQ(StageState::Create(Spec(2, 1, {0, 1}, false), 2).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(StageState::Create(Spec(2, 0, {0, 1}, false), 0).status().message(),
              HasSubstr("num_microbatches"));
  EXPECT_TRUE(StageState::Create(Spec(2, 1, {0, 1}, false), 1).ok());
}

}  // namespace
}  // namespace stagehand::runtime
