// Tests of the ZB-H2 planner: the larger budget, the parallelogram, its bubble against
// ZB-H1's, a cap, golden plan. Not tests of the policy's mechanics in general.
#include "runtime/planners/zb_h2.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/dry_run.h"
#include "runtime/planners/planner_test_util.h"
#include "runtime/simulator.h"

namespace stagehand::runtime {
namespace {

using ::testing::HasSubstr;

TEST(ZbH2Test, IsRegisteredWithASplitBackward) {
  const PlannerDefinition* definition = testing::ExpectRegistered("zb_h2");
  ASSERT_NE(definition, nullptr);
  absl::StatusOr<StepSpec> spec = definition->MakeSpec({4, 8});
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_TRUE(spec->split_backward);
  EXPECT_EQ(ZbH2Budget(*spec), 8);  // 2P
}

TEST(ZbH2Test, BubbleIsNoWorseThanZbH1) {
  // ZB-H1 at P = 4, M = 8 idles 3 of 27 units; 3M + P - 1 is also the floor for any plan
  // with the optimizer synchronised at the end (the last stage starts at P - 1).
  absl::StatusOr<SimResult> result = Simulate(ZbH2Definition(), {4, 8});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->step_time, 27);
  EXPECT_LE(result->bubble_fraction, 3.0 / 27);
}

TEST(ZbH2Test, FillsTheWarmUpWithForwards) {
  // Stage 0 runs 2P-1 = 7 forwards before its first B arrives at t = 7: no warm-up idle,
  // so its idle moves to the tail (where an unsynchronised optimizer would use it).
  absl::StatusOr<SimResult> result = Simulate(ZbH2Definition(), {4, 8});
  ASSERT_TRUE(result.ok()) << result.status();
  const std::vector<TimedAction>& stage0 = result->per_stage[0];
  for (int i = 0; i < 7; ++i) {
    EXPECT_EQ(stage0[i].action.kind, ActionKind::kForward) << i;
    EXPECT_EQ(stage0[i].start, i);
  }
  EXPECT_EQ(stage0.back().end, 24);
  EXPECT_EQ(result->peak_inflight, (std::vector<int>{8, 8, 8, 8}));
}

TEST(ZbH2Test, HonoursATighterBudget) {
  absl::StatusOr<SimResult> result = Simulate(ZbH2Definition(), {4, 8, 5});
  ASSERT_TRUE(result.ok()) << result.status();
  for (int peak : result->peak_inflight) EXPECT_LE(peak, 5);
  EXPECT_TRUE(ValidatePlanner(ZbH2Definition(), {4, 8, 5}).ok());
}

TEST(ZbH2Test, UnitCostPlanMatchesGolden) {
  testing::ExpectUnitCostPlanMatchesGolden(ZbH2Definition(), {4, 8}, "zb_h2_p4_m8.txt");
}

}  // namespace
}  // namespace stagehand::runtime
