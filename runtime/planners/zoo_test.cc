// Properties of every registered planner over many shapes: its plan validates, each chunk's
// backwards and W's run in microbatch order (so results are bitwise those of the sequential
// run), and the unit-cost bubble table. Not golden tests: those sit beside each planner.
#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/dry_run.h"
#include "runtime/planner.h"
#include "runtime/simulator.h"

namespace stagehand::runtime {
namespace {

using ::testing::HasSubstr;

const PlannerDefinition& Get(const std::string& name) {
  absl::StatusOr<const PlannerDefinition*> definition = PlannerRegistry::Default().Get(name);
  EXPECT_TRUE(definition.ok()) << definition.status();
  return **definition;
}

double Bubble(const std::string& name, PlannerOptions options) {
  absl::StatusOr<SimResult> result = Simulate(Get(name), options);
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? result->bubble_fraction : -1;
}

TEST(ZooTest, EveryBuiltInPlannerIsRegistered) {
  EXPECT_THAT(PlannerRegistry::Default().Names(),
              ::testing::IsSupersetOf({"1f1b", "dualpipe_v", "gpipe", "interleaved", "looped_bfs",
                                       "zb_h1", "zb_h2", "zb_v"}));
}

TEST(ZooTest, EveryPlanValidatesForManyShapes) {
  for (const std::string& name : PlannerRegistry::Default().Names()) {
    for (int p = 1; p <= 5; ++p) {
      for (int m = 1; m <= 13; ++m) {
        for (int v : {0, 3}) {
          const PlannerOptions options{p, m, 0, v};
          if (name == "dualpipe_v" && m < 2 * p) {
            EXPECT_THAT(Get(name).MakeSpec(options).status().message(),
                        HasSubstr("dualpipe_v needs num_microbatches >= 2 * num_stages"));
            continue;
          }
          absl::StatusOr<ScheduleTable> table = ValidatePlanner(Get(name), options);
          EXPECT_TRUE(table.ok()) << name << " P=" << p << " M=" << m << " v=" << v << ": "
                                  << table.status();
        }
      }
    }
  }
}

TEST(ZooTest, EachChunksBackwardsRunInMicrobatchOrder) {
  // Gradients accumulate in the order W (or B) runs: microbatch order per chunk keeps the
  // sum, bit for bit, the sequential run's.
  for (const std::string& name : PlannerRegistry::Default().Names()) {
    for (int p : {1, 2, 3, 4}) {
      for (int m : {4, 8, 9, 12}) {
        const PlannerOptions options{p, m, 0, 0};
        absl::StatusOr<StepSpec> spec = Get(name).MakeSpec(options);
        if (!spec.ok()) continue;
        absl::StatusOr<StageOrders> orders = PlannedOrders(Get(name), *spec);
        ASSERT_TRUE(orders.ok()) << orders.status();
        for (const std::vector<Action>& order : *orders) {
          std::map<std::pair<ActionKind, int>, int> last;  // (kind, chunk) -> microbatch
          for (const Action& action : order) {
            auto [it, inserted] = last.emplace(std::make_pair(action.kind, action.chunk), -1);
            EXPECT_LT(it->second, action.microbatch)
                << name << " P=" << p << " M=" << m << ": " << ActionToString(action);
            it->second = action.microbatch;
          }
        }
      }
    }
  }
}

TEST(ZooTest, UnitCostBubblesMatchTheClosedForms) {
  // F = I = W = 1, B = 2, optimizer synchronised at the end of the step; P = 4, M = 8.
  EXPECT_DOUBLE_EQ(Bubble("gpipe", {4, 8}), 3.0 / 11);        // (P-1)/(M+P-1)
  EXPECT_DOUBLE_EQ(Bubble("1f1b", {4, 8}), 3.0 / 11);         // (P-1)/(M+P-1)
  EXPECT_DOUBLE_EQ(Bubble("interleaved", {4, 8}), 3.0 / 19);  // (P-1)/(v*M+P-1), v = 2
  EXPECT_DOUBLE_EQ(Bubble("zb_h1", {4, 8}), 3.0 / 27);        // (P-1)(F+B-W) per stage
  for (const char* name : {"zb_h2", "zb_v", "dualpipe_v"}) {
    EXPECT_LE(Bubble(name, {4, 8}), 3.0 / 27) << name << " is worse than zb_h1";
  }
}

TEST(ZooTest, InterleavedBubbleHoldsWhenMIsNotAMultipleOfP) {
  for (int p : {2, 3, 4}) {
    for (int v : {2, 3}) {
      for (int m = p; m <= 13; ++m) {
        EXPECT_DOUBLE_EQ(Bubble("interleaved", {p, m, 0, v}), (p - 1.0) / (v * m + p - 1))
            << "P=" << p << " M=" << m << " v=" << v;
      }
    }
  }
}

TEST(ZooTest, PrintsTheBubbleTable) {
  for (const std::string& name : PlannerRegistry::Default().Names()) {
    absl::StatusOr<DryRunReport> report = DryRun(Get(name), {4, 8});
    ASSERT_TRUE(report.ok()) << report.status();
    std::cout << FormatDryRun(*report);
  }
}

}  // namespace
}  // namespace stagehand::runtime
