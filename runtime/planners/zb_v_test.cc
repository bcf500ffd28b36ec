// Tests of the ZB-V planner: the V placement, its bubble against ZB-H1's, 1F1B's memory, a
// budget too small for a V, golden plan. Not tests of the policy's mechanics in general.
#include "runtime/planners/zb_v.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/dry_run.h"
#include "runtime/planners/planner_test_util.h"
#include "runtime/simulator.h"

namespace stagehand::runtime {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ZbVTest, PlacesTwoChunksPerStageInAV) {
  const PlannerDefinition* definition = testing::ExpectRegistered("zb_v");
  ASSERT_NE(definition, nullptr);
  absl::StatusOr<StepSpec> spec = definition->MakeSpec({4, 8});
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_THAT(spec->chunk_to_stage, ElementsAre(0, 1, 2, 3, 3, 2, 1, 0));
  EXPECT_TRUE(spec->split_backward);
}

TEST(ZbVTest, BubbleIsNoWorseThanZbH1) {
  // 6M chunk-units of work per stage and P-1 idle: the last stage's start.
  absl::StatusOr<SimResult> result = Simulate(ZbVDefinition(), {4, 8});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->step_time, 6 * 8 + 3);
  EXPECT_DOUBLE_EQ(result->bubble_fraction, 3.0 / 51);
  EXPECT_LE(result->bubble_fraction, 3.0 / 27);
}

TEST(ZbVTest, HoldsWhat1F1BHolds) {
  // 2P chunk activations = P microbatches of a whole stage, 1F1B's stage-0 peak.
  absl::StatusOr<SimResult> result = Simulate(ZbVDefinition(), {4, 8});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->peak_inflight, (std::vector<int>{8, 8, 8, 8}));
}

TEST(ZbVTest, RejectsABudgetTooSmallForTheV) {
  // With one activation, stage 0 holds chunk 0's and cannot run the V's last chunk.
  const absl::Status status = ZbVDefinition().MakeSpec({2, 4, 1}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("zb_v cannot plan within max_inflight = 1"));
  EXPECT_THAT(status.message(), HasSubstr("step stalled"));
  // The refusal names the smallest budget that plans (here the V's default, 2P), and it plans.
  EXPECT_THAT(status.message(),
              HasSubstr("(the smallest that plans this step is 4; 0 = its default of 4)"));
  EXPECT_FALSE(ZbVDefinition().MakeSpec({2, 4, 3}).ok());
  EXPECT_TRUE(ZbVDefinition().MakeSpec({2, 4, 4}).ok());
  // A step too large to plan every budget names the default without searching.
  const absl::Status large = ZbVDefinition().MakeSpec({64, 4096, 1}).status();
  EXPECT_THAT(large.message(), HasSubstr("max_inflight = 1 (0 = its default of 128): "));
}

TEST(ZbVTest, UnitCostPlanMatchesGolden) {
  testing::ExpectUnitCostPlanMatchesGolden(ZbVDefinition(), {4, 8}, "zb_v_p4_m8.txt");
}

}  // namespace
}  // namespace stagehand::runtime
