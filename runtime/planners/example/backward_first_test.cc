// Tests of the example planner, found by name as a user's would be: it is registered by
// linking, its plan validates, it matches 1F1B's bubble and memory, it trains bitwise like the
// sequential run, and a dump of its plan loads back. Not a test of the runtime itself.
#include <memory>
#include <string>

#include "actors/testing/planner_parity.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/dry_run.h"
#include "runtime/planner.h"
#include "runtime/simulator.h"
#include "runtime/table_planner.h"

namespace my_project {
namespace {

using stagehand::runtime::PlannerDefinition;
using stagehand::runtime::PlannerRegistry;

const PlannerDefinition& Example() {
  absl::StatusOr<const PlannerDefinition*> definition =
      PlannerRegistry::Default().Get("example_backward_first");
  EXPECT_TRUE(definition.ok()) << definition.status();
  return **definition;
}

TEST(BackwardFirstTest, IsRegisteredByLinkingItsTarget) {
  EXPECT_THAT(PlannerRegistry::Default().Names(), ::testing::Contains("example_backward_first"));
}

TEST(BackwardFirstTest, ItsPlanValidates) {
  for (int p : {1, 2, 3, 4}) {
    for (int m : {1, 4, 7, 8}) {
      absl::StatusOr<stagehand::runtime::ScheduleTable> table = ValidatePlanner(Example(), {p, m});
      EXPECT_TRUE(table.ok()) << "P=" << p << " M=" << m << ": " << table.status();
    }
  }
}

TEST(BackwardFirstTest, MatchesOneFOneBAtUnitCost) {
  absl::StatusOr<stagehand::runtime::SimResult> result = Simulate(Example(), {4, 8});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_DOUBLE_EQ(result->bubble_fraction, 3.0 / 11);  // (P-1)/(M+P-1)
  EXPECT_EQ(result->peak_inflight, (std::vector<int>{4, 3, 2, 1}));
}

// The one-line parity check a user's planner test makes (actors/testing/planner_parity.h).
TEST(BackwardFirstTest, TrainsLikeTheSequentialRun) {
  stagehand::testing::ExpectTrainsLikeSequential(Example(), {/*num_stages=*/4,
                                                             /*num_microbatches=*/8});
}

TEST(BackwardFirstTest, ItsDumpedPlanRunsAsACsvSchedule) {
  absl::StatusOr<stagehand::runtime::ScheduleTable> table = ValidatePlanner(Example(), {4, 8});
  ASSERT_TRUE(table.ok()) << table.status();
  absl::StatusOr<std::unique_ptr<PlannerDefinition>> loaded =
      stagehand::runtime::MakeTablePlanner(*table, "example.csv");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  absl::StatusOr<stagehand::runtime::SimResult> result = Simulate(**loaded, {4, 8});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_DOUBLE_EQ(result->bubble_fraction, 3.0 / 11);
}

}  // namespace
}  // namespace my_project
