// Tests of the DualPipeV planner: V placement, its phases, bubble against ZB-H1's, the
// microbatch minimum, memory, golden plan. Not tests of the simulator or of the validator.
#include "runtime/planners/dualpipe_v.h"

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
using testing::OrderText;

TEST(DualPipeVTest, PlacesTwoChunksPerStageInAV) {
  absl::StatusOr<const PlannerDefinition*> definition =
      PlannerRegistry::Default().Get("dualpipe_v");
  ASSERT_TRUE(definition.ok()) << definition.status();
  absl::StatusOr<StepSpec> spec = (*definition)->MakeSpec({2, 4});
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_THAT(spec->chunk_to_stage, ElementsAre(0, 1, 1, 0));
  EXPECT_TRUE(spec->split_backward);
}

TEST(DualPipeVTest, PairsAForwardWithABackwardOfAnotherMicrobatch) {
  absl::StatusOr<StepSpec> spec = DualPipeVDefinition().MakeSpec({2, 4});
  ASSERT_TRUE(spec.ok()) << spec.status();
  // Stage 1 (chunks 1 and 2): phase 2 (F c1, F c2) x2; phase 4 pairs a forward with the
  // full backward (I then W) of an older microbatch; phase 6 defers the W's from its middle
  // on; phase 8 runs them.
  EXPECT_EQ(OrderText(DualPipeVOrder(*spec, 1)),
            "F c1 mb0 | F c2 mb0 | F c1 mb1 | F c2 mb1 | "
            "F c1 mb2 | I c2 mb0 | W c2 mb0 | F c2 mb2 | I c1 mb0 | W c1 mb0 | "
            "F c1 mb3 | I c2 mb1 | W c2 mb1 | F c2 mb3 | I c1 mb1 | W c1 mb1 | "
            "I c2 mb2 | W c2 mb2 | I c1 mb2 | W c1 mb2 | I c2 mb3 | I c1 mb3 | "
            "W c2 mb3 | W c1 mb3");
}

TEST(DualPipeVTest, BubbleIsNoWorseThanZbH1) {
  absl::StatusOr<SimResult> result = Simulate(DualPipeVDefinition(), {4, 8});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->step_time, 6 * 8 + 3);
  EXPECT_DOUBLE_EQ(result->bubble_fraction, 3.0 / 51);
  EXPECT_LE(result->bubble_fraction, 3.0 / 27);
  EXPECT_EQ(result->peak_inflight, (std::vector<int>{9, 9, 9, 9}));
}

TEST(DualPipeVTest, NeedsTwoMicrobatchesPerStage) {
  const absl::Status status = DualPipeVDefinition().MakeSpec({4, 7}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(),
              HasSubstr("dualpipe_v needs num_microbatches >= 2 * num_stages = 8 (one per chunk of "
                        "the V), got 7"));
  EXPECT_TRUE(ValidatePlanner(DualPipeVDefinition(), {4, 8}).ok());
}

TEST(DualPipeVTest, RejectsACapBelowItsPeak) {
  EXPECT_TRUE(DualPipeVDefinition().MakeSpec({4, 8, 9}).ok());
  EXPECT_THAT(DualPipeVDefinition().MakeSpec({4, 8, 8}).status().message(),
              HasSubstr("dualpipe_v holds 9 chunk activations on stage 0, above max_inflight = 8"));
}

TEST(DualPipeVTest, UnitCostPlanMatchesGolden) {
  testing::ExpectUnitCostPlanMatchesGolden(DualPipeVDefinition(), {4, 8}, "dualpipe_v_p4_m8.txt");
}

}  // namespace
}  // namespace stagehand::runtime
