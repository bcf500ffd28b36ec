// Tests of the looped-BFS planner: its two phases, bubble, memory, golden plan.
// Not tests of the simulator or of the validator.
#include "runtime/planners/looped_bfs.h"

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

TEST(LoopedBfsTest, IsRegistered) { testing::ExpectRegistered("looped_bfs"); }

TEST(LoopedBfsTest, AllForwardsChunkByChunkThenBackwardsInReverse) {
  absl::StatusOr<StepSpec> spec = LoopedBfsDefinition().MakeSpec({2, 2});
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(OrderText(LoopedBfsOrder(*spec, 1)),
            "F c1 mb0 | F c1 mb1 | F c3 mb0 | F c3 mb1 | B c3 mb0 | B c3 mb1 | B c1 mb0 | "
            "B c1 mb1");
}

TEST(LoopedBfsTest, BubbleAndMemoryAtFourStagesEightMicrobatches) {
  absl::StatusOr<SimResult> result = Simulate(LoopedBfsDefinition(), {4, 8});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_DOUBLE_EQ(result->bubble_fraction, 9.0 / 57);  // as interleaved, at v*M activations
  EXPECT_EQ(result->peak_inflight, (std::vector<int>{16, 16, 16, 16}));
}

TEST(LoopedBfsTest, RejectsACapBelowVTimesM) {
  EXPECT_TRUE(ValidatePlanner(LoopedBfsDefinition(), {4, 8, 16}).ok());
  EXPECT_THAT(LoopedBfsDefinition().MakeSpec({4, 8, 15}).status().message(),
              HasSubstr("looped_bfs holds v * num_microbatches = 16 activations"));
}

TEST(LoopedBfsTest, UnitCostPlanMatchesGolden) {
  testing::ExpectUnitCostPlanMatchesGolden(LoopedBfsDefinition(), {4, 8}, "looped_bfs_p4_m8.txt");
}

}  // namespace
}  // namespace stagehand::runtime
