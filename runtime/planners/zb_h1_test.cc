// Tests of the ZB-H1 planner: split backward, deferred W's, its bubble against 1F1B's,
// memory, golden plan. Not tests of the simulator or of the validator.
#include "runtime/planners/zb_h1.h"

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
using testing::OrderText;

TEST(ZbH1Test, IsRegisteredWithASplitBackward) {
  const PlannerDefinition* definition = testing::ExpectRegistered("zb_h1");
  ASSERT_NE(definition, nullptr);
  absl::StatusOr<StepSpec> spec = definition->MakeSpec({4, 8});
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_TRUE(spec->split_backward);
  EXPECT_EQ(spec->chunk_to_stage, StandardPlacement(4, 1));
}

TEST(ZbH1Test, StageSDefersSWeightGradients) {
  absl::StatusOr<StepSpec> spec = ZbH1Definition().MakeSpec({2, 3});
  ASSERT_TRUE(spec.ok()) << spec.status();
  // Stage 0 runs each W right after its B, like 1F1B; stage 1 runs W(k-1) after B(k).
  EXPECT_EQ(OrderText(ZbH1Order(*spec, 0)),
            "F c0 mb0 | F c0 mb1 | I c0 mb0 | W c0 mb0 | F c0 mb2 | I c0 mb1 | W c0 mb1 | "
            "I c0 mb2 | W c0 mb2");
  EXPECT_EQ(OrderText(ZbH1Order(*spec, 1)),
            "F c1 mb0 | I c1 mb0 | F c1 mb1 | I c1 mb1 | W c1 mb0 | F c1 mb2 | I c1 mb2 | "
            "W c1 mb1 | W c1 mb2");
}

TEST(ZbH1Test, IdleIsPMinusOneTimesFPlusBMinusWPerStage) {
  absl::StatusOr<SimResult> result = Simulate(ZbH1Definition(), {4, 8});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->step_time, 27);  // 3M units of work + (P-1)(F+B-W) idle
  EXPECT_DOUBLE_EQ(result->bubble_fraction, 3.0 / 27);
}

TEST(ZbH1Test, IdlesAThirdOf1F1B) {
  // 1F1B idles (P-1)(F+B) = 9 units per stage at P = 4 (one_f_one_b_test: step time 33
  // for 24 units of work); ZB-H1 fills two thirds of that with deferred W's.
  absl::StatusOr<SimResult> result = Simulate(ZbH1Definition(), {4, 8});
  ASSERT_TRUE(result.ok()) << result.status();
  for (const std::vector<TimedAction>& stage : result->per_stage) {
    double busy = 0;
    for (const TimedAction& timed : stage) busy += timed.end - timed.start;
    EXPECT_DOUBLE_EQ(result->step_time - busy, 9.0 / 3);
  }
}

TEST(ZbH1Test, HoldsMinPMActivationsOnEveryStage) {
  absl::StatusOr<SimResult> result = Simulate(ZbH1Definition(), {4, 8});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->peak_inflight, (std::vector<int>{4, 4, 4, 4}));
  EXPECT_TRUE(ValidatePlanner(ZbH1Definition(), {4, 8, 4}).ok());
  EXPECT_THAT(ZbH1Definition().MakeSpec({4, 8, 3}).status().message(),
              HasSubstr("zb_h1 holds min(num_stages, num_microbatches) = 4 activations"));
}

TEST(ZbH1Test, UnitCostPlanMatchesGolden) {
  testing::ExpectUnitCostPlanMatchesGolden(ZbH1Definition(), {4, 8}, "zb_h1_p4_m8.txt");
}

}  // namespace
}  // namespace stagehand::runtime
