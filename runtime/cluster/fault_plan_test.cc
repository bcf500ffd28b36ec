// Tests of STAGEHAND_FAULTS parsing: faults reach only their rank and attempt.
#include "runtime/cluster/fault_plan.h"

#include "gtest/gtest.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::runtime {
namespace {

using ::stagehand::testing::IsOk;
using ::stagehand::testing::StatusIs;

TEST(FaultPlan, EmptySpecHasNoFault) {
  absl::StatusOr<FaultPlan> p = FaultPlanFromSpec("", 0, 0);
  ASSERT_THAT(p.status(), IsOk());
  EXPECT_EQ(p->kill_at_step, 0);
  EXPECT_EQ(p->withhold_receive, 0);
}

TEST(FaultPlan, KillReachesOnlyItsRankOnTheFirstAttemptByDefault) {
  EXPECT_EQ(FaultPlanFromSpec("kill=2:4", 2, 0)->kill_at_step, 4);
  EXPECT_EQ(FaultPlanFromSpec("kill=2:4", 1, 0)->kill_at_step, 0);
  EXPECT_EQ(FaultPlanFromSpec("kill=2:4", 2, 1)->kill_at_step, 0);
}

TEST(FaultPlan, KillWithAttemptsRepeatsOnRestarts) {
  EXPECT_EQ(FaultPlanFromSpec("kill=1:2:9", 1, 8)->kill_at_step, 2);
  EXPECT_EQ(FaultPlanFromSpec("kill=1:2:9", 1, 9)->kill_at_step, 0);
}

TEST(FaultPlan, WithholdAndKillCombine) {
  absl::StatusOr<FaultPlan> p = FaultPlanFromSpec("withhold=1:3,kill=1:5", 1, 0);
  ASSERT_THAT(p.status(), IsOk());
  EXPECT_EQ(p->withhold_receive, 3);
  EXPECT_EQ(p->kill_at_step, 5);
}

TEST(FaultPlan, FlipAndNanReachEveryRankWhichAppliesThemToItsStagesAndBatches) {
  for (int rank : {0, 3}) {
    absl::StatusOr<FaultPlan> p = FaultPlanFromSpec("flip=2:5,nan=3:1", rank, 0);
    ASSERT_THAT(p.status(), IsOk());
    EXPECT_EQ(p->flip_stage, 2);
    EXPECT_EQ(p->flip_at_step, 5);
    EXPECT_EQ(p->nan_at_step, 3);
    EXPECT_EQ(p->nan_microbatch, 1);
  }
  EXPECT_EQ(FaultPlanFromSpec("", 0, 0)->flip_stage, -1);
  absl::StatusOr<FaultPlan> slow = FaultPlanFromSpec("slow=1:20", 0, 0);
  ASSERT_THAT(slow.status(), IsOk());
  EXPECT_EQ(slow->slow_stage, 1);
  EXPECT_EQ(slow->slow_forward_ms, 20.0);
}

TEST(FaultPlan, MalformedSpecIsAnError) {
  for (const char* spec : {"kill=2", "kill=a:4", "withhold=1", "explode=1:2", "kill", "kill=1:0",
                           "flip=1", "flip=-1:2", "flip=1:0", "nan=0:1", "nan=2:-1", "slow=1:0"}) {
    EXPECT_THAT(FaultPlanFromSpec(spec, 1, 0).status(),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << spec;
  }
}

}  // namespace
}  // namespace stagehand::runtime
