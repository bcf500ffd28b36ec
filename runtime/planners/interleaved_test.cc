// Tests of the interleaved planner: placement, groups, bubble, memory, golden plan.
// Not tests of the simulator or of the validator.
#include "runtime/planners/interleaved.h"

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

TEST(InterleavedTest, IsRegistered) { testing::ExpectRegistered("interleaved"); }

TEST(InterleavedTest, PlacesChunksRoundRobinTwoPerStageByDefault) {
  absl::StatusOr<StepSpec> spec = InterleavedDefinition().MakeSpec({4, 8});
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->num_chunks, 8);
  EXPECT_THAT(spec->chunk_to_stage, ElementsAre(0, 1, 2, 3, 0, 1, 2, 3));
  EXPECT_FALSE(spec->split_backward);
  absl::StatusOr<StepSpec> three = InterleavedDefinition().MakeSpec({2, 4, 0, 3});
  ASSERT_TRUE(three.ok()) << three.status();
  EXPECT_THAT(three->chunk_to_stage, ElementsAre(0, 1, 0, 1, 0, 1));
}

TEST(InterleavedTest, MicrobatchGroupsHoldAtLeastPEach) {
  EXPECT_THAT(InterleavedGroups(4, 8), ElementsAre(4, 4));
  EXPECT_THAT(InterleavedGroups(4, 10), ElementsAre(5, 5));
  EXPECT_THAT(InterleavedGroups(4, 13), ElementsAre(5, 4, 4));
  EXPECT_THAT(InterleavedGroups(4, 3), ElementsAre(3));
}

TEST(InterleavedTest, WarmUpCoversTheOtherChunksOfTheFirstGroup) {
  absl::StatusOr<StepSpec> spec = InterleavedDefinition().MakeSpec({2, 4});
  ASSERT_TRUE(spec.ok()) << spec.status();
  // Stage 0: warm-up 2(P-1) + (v-1)*P = 4 forwards (chunk 0 mb0-1, chunk 2 mb0-1), then
  // 1F1B, backwards through chunk 2 before chunk 0 for each group.
  EXPECT_EQ(OrderText(InterleavedOrder(*spec, 0)),
            "F c0 mb0 | F c0 mb1 | F c2 mb0 | F c2 mb1 | F c0 mb2 | B c2 mb0 | F c0 mb3 | "
            "B c2 mb1 | F c2 mb2 | B c0 mb0 | F c2 mb3 | B c0 mb1 | B c2 mb2 | B c2 mb3 | "
            "B c0 mb2 | B c0 mb3");
}

TEST(InterleavedTest, BubbleIsPMinusOneOverVMPlusPMinusOne) {
  absl::StatusOr<SimResult> two = Simulate(InterleavedDefinition(), {4, 8});
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(two->step_time, 57);  // (v*M + P-1) * (F + B)
  EXPECT_DOUBLE_EQ(two->bubble_fraction, 3.0 / 19);
  absl::StatusOr<SimResult> three = Simulate(InterleavedDefinition(), {4, 8, 0, 3});
  ASSERT_TRUE(three.ok()) << three.status();
  EXPECT_DOUBLE_EQ(three->bubble_fraction, 3.0 / 27);
}

TEST(InterleavedTest, WorksWhenMIsNotAMultipleOfP) {
  for (int m : {5, 6, 7, 9, 10, 11}) {
    absl::StatusOr<ScheduleTable> table = ValidatePlanner(InterleavedDefinition(), {4, m});
    EXPECT_TRUE(table.ok()) << "M=" << m << ": " << table.status();
    absl::StatusOr<SimResult> result = Simulate(InterleavedDefinition(), {4, m});
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_DOUBLE_EQ(result->bubble_fraction, 3.0 / (2 * m + 3)) << "M=" << m;
  }
}

TEST(InterleavedTest, HoldsMoreThan1F1BAndRejectsATighterCap) {
  absl::StatusOr<SimResult> result = Simulate(InterleavedDefinition(), {4, 8});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->peak_inflight, (std::vector<int>{11, 9, 7, 5}));
  EXPECT_TRUE(InterleavedDefinition().MakeSpec({4, 8, 11}).ok());
  const absl::Status status = InterleavedDefinition().MakeSpec({4, 8, 10}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("holds 11 activations (microbatch-chunks) on stage 0, "
                                          "above max_inflight = 10"));
}

TEST(InterleavedTest, UnitCostPlanMatchesGolden) {
  testing::ExpectUnitCostPlanMatchesGolden(InterleavedDefinition(), {4, 8},
                                           "interleaved_p4_m8.txt");
}

}  // namespace
}  // namespace stagehand::runtime
