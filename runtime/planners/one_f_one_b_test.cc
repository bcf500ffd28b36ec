// Tests of the 1F1B planner: its phases, its simulated bubble and memory, its golden plan.
// Not tests of the simulator's mechanics (runtime/simulator_test.cc).
#include "runtime/planners/one_f_one_b.h"

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/planners/planner_test_util.h"
#include "runtime/simulator.h"

namespace stagehand::runtime {
namespace {

using ::testing::HasSubstr;

std::string OrderText(const StepSpec& spec, int stage) {
  return testing::OrderText(OneFOneBOrder(spec, stage));
}

TEST(OneFOneBTest, IsRegistered) { testing::ExpectRegistered("1f1b"); }

TEST(OneFOneBOverlapTest, IsRegisteredWithOneFOneBsOrderAndOverlapsPairsOnly) {
  testing::ExpectRegistered("1f1b_overlap");
  const OneFOneBOverlapDefinition overlap;
  EXPECT_TRUE(overlap.OverlapsSubSteps());
  EXPECT_FALSE(OneFOneBDefinition().OverlapsSubSteps());
  absl::StatusOr<StepSpec> spec = overlap.MakeSpec({3, 4, 0});
  ASSERT_TRUE(spec.ok()) << spec.status();
  const std::unique_ptr<Planner> planner = overlap.MakePlanner(*spec, 0);
  const Action f{0, ActionKind::kForward, 0, 3}, b{0, ActionKind::kBackward, 0, 1};
  EXPECT_TRUE(planner->MayOverlap(f, {b}));  // a steady-state pair
  EXPECT_TRUE(planner->MayOverlap(b, {f}));
  // F with F: the warm-up's forwards overlap (one's dispatch under the other's compute).
  EXPECT_TRUE(planner->MayOverlap(f, {Action{0, ActionKind::kForward, 0, 2}}));
  // Never B with B (their weight gradients would add up out of microbatch order), never one
  // microbatch's F and B, never beside two running actions.
  EXPECT_FALSE(planner->MayOverlap(b, {Action{0, ActionKind::kBackward, 0, 0}}));
  EXPECT_FALSE(planner->MayOverlap(Action{0, ActionKind::kBackward, 0, 3}, {f}));
  EXPECT_FALSE(planner->MayOverlap(f, {b, Action{0, ActionKind::kBackward, 0, 2}}));
  EXPECT_FALSE(OneFOneBDefinition().MakePlanner(*spec, 0)->MayOverlap(f, {b}));
  // One more warm-up forward than 1F1B: a pair's B has its gradient when its F starts.
  EXPECT_EQ(testing::OrderText(OneFOneBOrder(*spec, 2, /*extra_warmup=*/1)),
            "F c2 mb0 | F c2 mb1 | B c2 mb0 | F c2 mb2 | B c2 mb1 | F c2 mb3 | B c2 mb2 | "
            "B c2 mb3");
  EXPECT_THAT(overlap.MakeSpec({4, 8, 4}).status().message(),
              HasSubstr("1f1b_overlap holds min(num_stages + 1, num_microbatches) = 5"));
}

TEST(OneFOneBTest, WarmUpSteadyCoolDown) {
  absl::StatusOr<StepSpec> spec = OneFOneBDefinition().MakeSpec({3, 4, 0});
  ASSERT_TRUE(spec.ok()) << spec.status();
  // Stage 0: warm-up 2, steady 2 pairs, cool-down 2.
  EXPECT_EQ(OrderText(*spec, 0),
            "F c0 mb0 | F c0 mb1 | F c0 mb2 | B c0 mb0 | F c0 mb3 | B c0 mb1 | B c0 mb2 | "
            "B c0 mb3");
  // The last stage has no warm-up: strict alternation.
  EXPECT_EQ(OrderText(*spec, 2),
            "F c2 mb0 | B c2 mb0 | F c2 mb1 | B c2 mb1 | F c2 mb2 | B c2 mb2 | F c2 mb3 | "
            "B c2 mb3");
}

TEST(OneFOneBTest, FewerMicrobatchesThanStagesIsAllWarmUp) {
  absl::StatusOr<StepSpec> spec = OneFOneBDefinition().MakeSpec({4, 2, 0});
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(OrderText(*spec, 0), "F c0 mb0 | F c0 mb1 | B c0 mb0 | B c0 mb1");
  absl::StatusOr<SimResult> result = Simulate(OneFOneBDefinition(), {4, 2, 0});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->peak_inflight, (std::vector<int>{2, 2, 2, 1}));
}

TEST(OneFOneBTest, BubbleIsPMinusOneOverMPlusPMinusOne) {
  absl::StatusOr<SimResult> result = Simulate(OneFOneBDefinition(), {4, 8, 0});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->step_time, 33);  // (M + P - 1) * (F + B)
  EXPECT_DOUBLE_EQ(result->bubble_fraction, 3.0 / 11.0);
}

TEST(OneFOneBTest, FirstBackwardReachesStageZeroAfterOneFullPipelinePass) {
  absl::StatusOr<SimResult> result = Simulate(OneFOneBDefinition(), {4, 8, 0});
  ASSERT_TRUE(result.ok()) << result.status();
  // s0: F mb0..mb3 at t = 0..4, then B c0 mb0 once mb0's forward crossed P stages and its
  // backward came back through P-1: t = P*F + (P-1)*B = 4 + 6.
  const TimedAction& first_backward = result->per_stage[0][4];
  EXPECT_EQ(ActionToString(first_backward.action), "s0 B c0 mb0");
  EXPECT_EQ(first_backward.start, 10);
  // The last stage never idles between its first forward (t = 3) and its last backward.
  const std::vector<TimedAction>& last = result->per_stage[3];
  EXPECT_EQ(last.front().start, 3);
  EXPECT_EQ(last.back().end, 3 + 8 * 3);
}

TEST(OneFOneBTest, StageSHoldsPMinusSActivations) {
  absl::StatusOr<SimResult> result = Simulate(OneFOneBDefinition(), {4, 8, 0});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->peak_inflight, (std::vector<int>{4, 3, 2, 1}));
}

TEST(OneFOneBTest, RunsWithinItsOwnMemoryBound) {
  absl::StatusOr<SimResult> result = Simulate(OneFOneBDefinition(), {4, 8, 4});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->peak_inflight[0], 4);
  const absl::StatusOr<StepSpec> spec = OneFOneBDefinition().MakeSpec({4, 8, 3});
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(spec.status().message(),
              HasSubstr("1f1b holds min(num_stages, num_microbatches) = 4 activations"));
}

TEST(OneFOneBTest, UnitCostPlanMatchesGolden) {
  testing::ExpectUnitCostPlanMatchesGolden(OneFOneBDefinition(), {4, 8, 0}, "1f1b_p4_m8.txt");
}

}  // namespace
}  // namespace stagehand::runtime
