// Tests of StageLoop: the ready list a planner sees, local hand-offs, the busy lane and
// planner errors. Not tests of planners (runtime/planners/) or of StageState's graph rules.
#include "runtime/stage_loop.h"

#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::runtime {
namespace {

using ::stagehand::testing::IsOk;
using ::stagehand::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Two stages, four chunks in a V: stage 0 holds c0 and c3, stage 1 holds c1 and c2.
StepSpec VSpec(int microbatches = 1) {
  StepSpec spec;
  spec.num_stages = 2;
  spec.num_microbatches = microbatches;
  spec.num_chunks = 4;
  spec.chunk_to_stage = VPlacement(2);  // {0, 1, 1, 0}
  return spec;
}

// Picks the first ready action, and records every ready list it was shown.
class FirstReady : public Planner {
 public:
  explicit FirstReady(std::vector<std::vector<Action>>* seen) : seen_(seen) {}
  std::optional<Action> Next(const std::vector<Action>& ready, const StageState&) override {
    seen_->push_back(ready);
    return ready.front();
  }

 private:
  std::vector<std::vector<Action>>* seen_;
};

// Always picks the same action, ready or not.
class Stubborn : public Planner {
 public:
  explicit Stubborn(Action action) : action_(action) {}
  std::optional<Action> Next(const std::vector<Action>&, const StageState&) override {
    return action_;
  }

 private:
  Action action_;
};

std::string Text(const std::vector<Transfer>& transfers) {
  std::string text;
  for (const Transfer& t : transfers) text += TransferToString(t) + ";";
  return text;
}

TEST(LocalHandOffTest, ForwardFeedsTheNextChunkOnlyWhenItIsOnTheSameStage) {
  const std::optional<Transfer> local =
      LocalHandOff(VSpec(), Action{1, ActionKind::kForward, 1, 0});
  ASSERT_TRUE(local.has_value());
  EXPECT_EQ(TransferToString(*local), "s1 SEND_F c2 mb0 -> s1");
  EXPECT_FALSE(LocalHandOff(VSpec(), Action{0, ActionKind::kForward, 0, 0}).has_value());
  EXPECT_FALSE(LocalHandOff(VSpec(), Action{0, ActionKind::kForward, 3, 0}).has_value());
}

TEST(LocalHandOffTest, BackwardFeedsThePreviousChunkAndWeightGradFeedsNothing) {
  const std::optional<Transfer> local =
      LocalHandOff(VSpec(), Action{1, ActionKind::kBackward, 2, 0});
  ASSERT_TRUE(local.has_value());
  EXPECT_EQ(TransferToString(*local), "s1 SEND_B c1 mb0 -> s1");
  EXPECT_TRUE(LocalHandOff(VSpec(), Action{1, ActionKind::kBackwardInput, 2, 0}).has_value());
  EXPECT_FALSE(LocalHandOff(VSpec(), Action{1, ActionKind::kBackwardWeight, 2, 0}).has_value());
}

TEST(StageLoopTest, CreateRefusesANullPlannerAndABadStage) {
  EXPECT_THAT(StageLoop::Create(VSpec(), 0, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no planner")));
  std::vector<std::vector<Action>> seen;
  EXPECT_THAT(StageLoop::Create(VSpec(), 2, std::make_unique<FirstReady>(&seen)),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(StageLoopTest, ALocalHandOffHoldsItsConsumerBackUntilItLands) {
  std::vector<std::vector<Action>> seen;
  absl::StatusOr<StageLoop> loop =
      StageLoop::Create(VSpec(), 1, std::make_unique<FirstReady>(&seen));
  ASSERT_THAT(loop, IsOk());
  ASSERT_THAT(loop->InputArrived(Transfer{ActionKind::kSendForward, 0, 1, 1, 0}), IsOk());
  absl::StatusOr<std::optional<Action>> first = loop->Next();
  ASSERT_THAT(first, IsOk());
  EXPECT_EQ(ActionToString(**first), "s1 F c1 mb0");
  EXPECT_TRUE(loop->lane_busy());
  absl::StatusOr<FinishedOutputs> outputs = loop->Finished(**first);
  ASSERT_THAT(outputs, IsOk());
  EXPECT_THAT(outputs->remote, IsEmpty());
  EXPECT_EQ(Text(outputs->local), "s1 SEND_F c2 mb0 -> s1;");
  // StageState counts c2's input as there, but the payload has not landed: not ready yet.
  EXPECT_THAT(loop->Ready(), IsEmpty());
  EXPECT_FALSE(loop->Blocked());  // a hand-off is pending, so this stage is not stalled
  EXPECT_THAT(loop->Next(), IsOk());
  ASSERT_THAT(loop->HandOffArrived(outputs->local[0]), IsOk());
  EXPECT_EQ(ActionToString(loop->Ready().at(0)), "s1 F c2 mb0");
  absl::StatusOr<std::optional<Action>> second = loop->Next();
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ(ActionToString(**second), "s1 F c2 mb0");
  // The last chunk's F sends to c3 on stage 0: remote, not local.
  outputs = loop->Finished(**second);
  ASSERT_THAT(outputs, IsOk());
  EXPECT_EQ(Text(outputs->remote), "s1 SEND_F c3 mb0 -> s0;");
  EXPECT_THAT(outputs->local, IsEmpty());
  EXPECT_TRUE(loop->Blocked());
}

TEST(StageLoopTest, NoPlannerCallWhileTheLaneIsBusyOrNothingIsReady) {
  std::vector<std::vector<Action>> seen;
  absl::StatusOr<StageLoop> loop =
      StageLoop::Create(VSpec(2), 0, std::make_unique<FirstReady>(&seen));
  ASSERT_THAT(loop, IsOk());
  absl::StatusOr<std::optional<Action>> first = loop->Next();
  ASSERT_THAT(first, IsOk());
  EXPECT_EQ(ActionToString(**first), "s0 F c0 mb0");
  absl::StatusOr<std::optional<Action>> busy = loop->Next();  // lane busy
  ASSERT_THAT(busy, IsOk());
  EXPECT_FALSE(busy->has_value());
  ASSERT_THAT(loop->Finished(**first), IsOk());
  ASSERT_THAT(loop->Next(), IsOk());  // F c0 mb1
  ASSERT_THAT(loop->Finished(Action{0, ActionKind::kForward, 0, 1}), IsOk());
  absl::StatusOr<std::optional<Action>> idle = loop->Next();  // everything waits on inputs
  ASSERT_THAT(idle, IsOk());
  EXPECT_FALSE(idle->has_value());
  EXPECT_EQ(seen.size(), 2u);  // asked twice, never with an empty list
}

TEST(StageLoopTest, APlannerPickingAnActionThatIsNotReadyIsNamed) {
  const Action early{0, ActionKind::kBackward, 0, 0};
  absl::StatusOr<StageLoop> loop = StageLoop::Create(VSpec(), 0, std::make_unique<Stubborn>(early));
  ASSERT_THAT(loop, IsOk());
  EXPECT_THAT(loop->Next(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                     HasSubstr("the planner of stage 0 picked s0 B c0 mb0")));
}

TEST(StageLoopTest, AHandOffThatWasNeverSentIsAnError) {
  std::vector<std::vector<Action>> seen;
  absl::StatusOr<StageLoop> loop =
      StageLoop::Create(VSpec(), 1, std::make_unique<FirstReady>(&seen));
  ASSERT_THAT(loop, IsOk());
  EXPECT_THAT(loop->HandOffArrived(Transfer{ActionKind::kSendForward, 1, 1, 2, 0}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no local hand-off")));
}

}  // namespace
}  // namespace stagehand::runtime
