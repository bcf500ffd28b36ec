// Tests of the GPipe planner: its order, its simulated bubble and memory, its golden plan.
// Not tests of the simulator's mechanics (runtime/simulator_test.cc).
#include "runtime/planners/gpipe.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/planners/planner_test_util.h"
#include "runtime/simulator.h"

namespace stagehand::runtime {
namespace {

using ::testing::HasSubstr;

TEST(GPipeTest, IsRegistered) { testing::ExpectRegistered("gpipe"); }

TEST(GPipeTest, AllForwardsThenAllBackwards) {
  absl::StatusOr<StepSpec> spec = GPipeDefinition().MakeSpec({2, 3, 0});
  ASSERT_TRUE(spec.ok()) << spec.status();
  std::vector<std::string> order;
  for (const Action& action : GPipeOrder(*spec, 1)) order.push_back(ActionToString(action));
  EXPECT_EQ(order, (std::vector<std::string>{"s1 F c1 mb0", "s1 F c1 mb1", "s1 F c1 mb2",
                                             "s1 B c1 mb0", "s1 B c1 mb1", "s1 B c1 mb2"}));
}

TEST(GPipeTest, BubbleIsPMinusOneOverMPlusPMinusOne) {
  absl::StatusOr<SimResult> result = Simulate(GPipeDefinition(), {4, 8, 0});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->step_time, 33);  // (M + P - 1) * (F + B)
  EXPECT_DOUBLE_EQ(result->bubble_fraction, 3.0 / 11.0);
}

TEST(GPipeTest, EveryStageHoldsAllMicrobatches) {
  absl::StatusOr<SimResult> result = Simulate(GPipeDefinition(), {4, 8, 0});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->peak_inflight, (std::vector<int>{8, 8, 8, 8}));
}

TEST(GPipeTest, RefusesAMaxInflightBelowM) {
  const absl::StatusOr<StepSpec> spec = GPipeDefinition().MakeSpec({4, 8, 4});
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(spec.status().message(), HasSubstr("above max_inflight = 4"));
  EXPECT_TRUE(GPipeDefinition().MakeSpec({4, 8, 8}).ok());
}

TEST(GPipeTest, SimulatorReportsAMaxInflightForcedBelowM) {
  absl::StatusOr<StepSpec> spec = GPipeDefinition().MakeSpec({4, 8, 0});
  ASSERT_TRUE(spec.ok());
  spec->max_inflight = 4;
  absl::StatusOr<SimResult> result = SimulateSpec(GPipeDefinition(), *spec);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(result.status().message(),
              HasSubstr("gpipe: at t=4 the planner of stage 0 picked s0 F c0 mb4: s0 F c0 mb4 "
                        "would make stage 0 hold 5 activations, above max_inflight = 4"));
}

TEST(GPipeTest, UnitCostPlanMatchesGolden) {
  testing::ExpectUnitCostPlanMatchesGolden(GPipeDefinition(), {4, 8, 0}, "gpipe_p4_m8.txt");
}

}  // namespace
}  // namespace stagehand::runtime
