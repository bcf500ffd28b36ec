// Tests of the adaptive planner: the V placement, its unit-cost bubble against zb_v's, the
// microbatch order per chunk, estimates that persist between steps, that it does not stall
// under jitter and a straggler, and the golden plan. Not the benchmark table (simulate_table.sh).
#include "runtime/planners/adaptive.h"

#include <map>
#include <memory>
#include <random>
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

// F = 1, I = 1, W = 1, each multiplied by a uniform draw in [1 - spread, 1 + spread]; stage
// `slow` (if >= 0) computes `factor` times slower.
class JitteredCosts : public ActionCosts {
 public:
  JitteredCosts(double spread, uint64_t seed, int slow = -1, double factor = 1)
      : draw_(1 - spread, 1 + spread), rng_(seed), slow_(slow), factor_(factor) {}
  double ComputeTime(const Action& action) override {
    return draw_(rng_) * (action.stage == slow_ ? factor_ : 1);
  }
  double TransferTime(const Transfer&) override { return 0.05; }

 private:
  std::uniform_real_distribution<double> draw_;
  std::mt19937_64 rng_;
  int slow_;
  double factor_;
};

TEST(AdaptiveTest, PlacesTwoChunksPerStageInAV) {
  const PlannerDefinition* definition = testing::ExpectRegistered("adaptive");
  ASSERT_NE(definition, nullptr);
  absl::StatusOr<StepSpec> spec = definition->MakeSpec({4, 8});
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_THAT(spec->chunk_to_stage, ElementsAre(0, 1, 2, 3, 3, 2, 1, 0));
  EXPECT_TRUE(spec->split_backward);
}

TEST(AdaptiveTest, UnitCostBubbleIsZbVs) {
  absl::StatusOr<SimResult> adaptive = Simulate(AdaptiveDefinition(), {4, 8});
  ASSERT_TRUE(adaptive.ok()) << adaptive.status();
  EXPECT_EQ(adaptive->step_time, 6 * 8 + 3);  // zb_v's: 6M units of work, P-1 idle
  EXPECT_DOUBLE_EQ(adaptive->bubble_fraction, 3.0 / 51);
  EXPECT_EQ(adaptive->peak_inflight, (std::vector<int>{8, 8, 8, 8}));
}

TEST(AdaptiveTest, RunsEachChunksActionsInMicrobatchOrderUnderJitter) {
  const AdaptiveDefinition definition;
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    for (int p : {2, 4, 8}) {
      absl::StatusOr<StepSpec> spec = definition.MakeSpec({p, 4 * p});
      ASSERT_TRUE(spec.ok()) << spec.status();
      JitteredCosts costs(0.3, seed, seed % 3 == 0 ? p / 2 : -1, 1.5);
      absl::StatusOr<SimResult> result = SimulateWithCosts(definition, *spec, costs);
      ASSERT_TRUE(result.ok()) << "P=" << p << " seed " << seed << ": " << result.status();
      for (const std::vector<TimedAction>& stage : result->per_stage) {
        std::map<std::pair<ActionKind, int>, int> last;  // (kind, chunk) -> microbatch
        for (const TimedAction& timed : stage) {
          auto [it, inserted] =
              last.emplace(std::make_pair(timed.action.kind, timed.action.chunk), -1);
          EXPECT_EQ(it->second + 1, timed.action.microbatch) << ActionToString(timed.action);
          it->second = timed.action.microbatch;
        }
      }
    }
  }
}

TEST(AdaptiveTest, KeepsEstimatesBetweenSteps) {
  auto table = std::make_shared<AdaptiveEstimateTable>();
  const StepSpec spec = *AdaptiveDefinition().MakeSpec({2, 4});
  AdaptiveEstimates estimates;
  estimates.duration[{ActionKind::kForward, 0}] = 2.5;
  table->Put(spec, 0, /*steady=*/false, estimates);  // before any Get: another shape, dropped
  EXPECT_TRUE(table->Get(spec, 0, false).duration.empty());
  table->Put(spec, 0, false, estimates);
  EXPECT_EQ((table->Get(spec, 0, false).duration.at({ActionKind::kForward, 0})), 2.5);
  EXPECT_TRUE(table->Get(spec, 0, true).duration.empty());  // seconds and units do not mix
}

TEST(AdaptiveTest, LearnsDurationsFromItsClock) {
  class ManualClock : public PlannerClock {
   public:
    double Now() const override { return now; }
    double now = 0;
  } clock;
  const StepSpec spec = *AdaptiveDefinition().MakeSpec({2, 4});
  auto table = std::make_shared<AdaptiveEstimateTable>();
  table->Get(spec, 0, false);  // sets the shape
  {
    AdaptiveOptions options;
    options.budget = 4;
    options.carry_estimates = true;
    AdaptivePlanner planner(spec, 0, options, clock, table);
    StageState state(spec, 0);
    const std::optional<Action> f = planner.Next(state.Ready(), state);
    ASSERT_TRUE(f.has_value());
    EXPECT_EQ(*f, (Action{0, ActionKind::kForward, 0, 0}));
    ASSERT_TRUE(state.Started(*f).ok());
    clock.now = 2.5;
    ASSERT_TRUE(state.Finished(*f).ok());
    planner.ActionFinished(*f);
  }  // the planner hands its estimates back when the step ends
  EXPECT_DOUBLE_EQ((table->Get(spec, 0, false).duration.at({ActionKind::kForward, 0})), 2.5);
}

TEST(AdaptiveTest, RejectsABudgetTooSmallForTheV) {
  const absl::Status status = AdaptiveDefinition().MakeSpec({2, 4, 1}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("adaptive cannot plan within max_inflight = 1"));
  // It names the smallest budget that plans, and that budget plans.
  EXPECT_THAT(status.message(),
              HasSubstr("(the smallest that plans this step is 2; 0 = its default of 4)"));
  EXPECT_TRUE(AdaptiveDefinition().MakeSpec({2, 4, 2}).ok());
}

TEST(AdaptiveTest, UnitCostPlanMatchesGolden) {
  testing::ExpectUnitCostPlanMatchesGolden(AdaptiveDefinition(), {4, 8}, "adaptive_p4_m8.txt");
}

}  // namespace
}  // namespace stagehand::runtime
