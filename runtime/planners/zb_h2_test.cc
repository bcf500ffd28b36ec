// Tests of the ZB-H2 planner: the larger budget, the parallelogram, its bubble against
// ZB-H1's, a cap, golden plan. Not tests of the policy's mechanics in general.
#include "runtime/planners/zb_h2.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/dry_run.h"
#include "runtime/planners/planner_test_util.h"
#include "runtime/planners/zero_bubble_policy.h"
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

TEST(ZbH2Test, KeptPlansAreThePlansSimulatedAgain) {
  // Five shapes, one more than the plans kept: the first is simulated again after it is
  // dropped; every stage's order is its stage of the whole plan, and a MakePlanner of each
  // stage runs the plan that MakePlanners gives.
  const ZbH2Definition definition;
  for (int round = 0; round < 2; ++round) {
    for (int m = 4; m <= 8; ++m) {
      const StepSpec spec = *definition.MakeSpec({3, m});
      const absl::StatusOr<std::vector<std::vector<Action>>> orders =
          ZeroBubbleOrders(spec, ZbH2Budget(spec));
      ASSERT_TRUE(orders.ok()) << orders.status();
      ASSERT_EQ(orders->size(), 3u);
      for (int s = 0; s < 3; ++s) {
        const absl::StatusOr<std::vector<Action>> order =
            ZeroBubbleStageOrder(spec, ZbH2Budget(spec), s);
        ASSERT_TRUE(order.ok()) << order.status();
        EXPECT_EQ(*order, (*orders)[s]) << "M=" << m << " s" << s;
        EXPECT_EQ(order->size(), 3u * m);
      }
      EXPECT_EQ(ZeroBubbleStageOrder(spec, ZbH2Budget(spec), 3).status().code(),
                absl::StatusCode::kOutOfRange);
    }
  }
  // A budget the plan cannot run within (the V with one activation: stage 0's first chunk
  // holds it, its last chunk cannot start) is an error, kept as such.
  StepSpec tight = *definition.MakeSpec({4, 8});
  tight.num_chunks = 8;
  tight.chunk_to_stage = VPlacement(4);
  EXPECT_FALSE(ZeroBubbleOrders(tight, 1).ok());
  EXPECT_FALSE(ZeroBubbleStageOrder(tight, 1, 0).ok());
}

TEST(ZbH2Test, UnitCostPlanMatchesGolden) {
  testing::ExpectUnitCostPlanMatchesGolden(ZbH2Definition(), {4, 8}, "zb_h2_p4_m8.txt");
}

}  // namespace
}  // namespace stagehand::runtime
