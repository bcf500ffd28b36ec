// Tests of --planner=auto's policy: the pick is the fastest simulated planner, re-planning
// keeps the placement and waits for the warm-up and for the costs to drift.
// Not the launcher's pipeline swap (tools/launch.cc).
#include "runtime/sim/auto_planner.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/planner.h"
#include "runtime/sim/simulate_run.h"
#include "runtime/trace/from_simulation.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::runtime::sim {
namespace {

using ::stagehand::testing::IsOk;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

// F = I = W = `scale` seconds per chunk, free transfers.
CostsForSpec Uniform(double scale) {
  return [scale](const StepSpec& spec) -> absl::StatusOr<StepCosts> {
    StepCosts costs;
    costs.chunks.resize(spec.num_chunks);
    for (ChunkCost& chunk : costs.chunks) {
      chunk.forward = chunk.backward_input = chunk.backward_weight = scale;
      chunk.activation_bytes = 1;
    }
    costs.stage_static_bytes.assign(spec.num_stages, 0);
    costs.peak_matmul_flops = 1;  // seconds, not units
    return costs;
  };
}

TEST(AutoPlannerTest, PicksTheFastestSimulatedPlannerAndSaysWhy) {
  PlanRequest request;
  request.options = {4, 8};
  absl::StatusOr<AutoPick> pick = PickBySimulation(
      PlannerRegistry::Default(), {"gpipe", "1f1b", "zb_h1"}, request, Uniform(1), "unit costs", 0);
  ASSERT_THAT(pick.status(), IsOk());
  EXPECT_EQ(pick->planner, "zb_h1");  // the ZB-H1 bubble is a third of 1F1B's
  EXPECT_THAT(pick->reason, HasSubstr("simulated with unit costs: zb_h1 "));
  absl::StatusOr<AutoPick> none = PickBySimulation(PlannerRegistry::Default(), {"dualpipe_v"},
                                                   PlanRequest{{4, 4}}, Uniform(1), "x", 0);
  EXPECT_THAT(none.status().message(), HasSubstr("no planner can run this request"));
}

TEST(AutoPlannerTest, SwitchesOnlyWithinTheSamePlacement) {
  const StepSpec zb_v = *(*PlannerRegistry::Default().Get("zb_v"))->MakeSpec({4, 8});
  const std::vector<std::string> names = SamePlacement(PlannerRegistry::Default(), {4, 8}, zb_v);
  EXPECT_THAT(names, Contains("adaptive"));
  EXPECT_THAT(names, Contains("zb_v"));
  EXPECT_THAT(names, Not(Contains("1f1b")));  // P chunks, not 2P
}

TEST(AutoPlannerTest, DriftIsTheLargestRelativeChange) {
  StepCosts a = *Uniform(1)(*(*PlannerRegistry::Default().Get("1f1b"))->MakeSpec({2, 2}));
  StepCosts b = a;
  EXPECT_DOUBLE_EQ(CostDrift(a, b), 0);
  b.chunks[1].backward_weight = 1.5;
  b.chunks[0].forward = 0.9;
  EXPECT_DOUBLE_EQ(CostDrift(a, b), 0.5);
}

// A trace of `steps` simulated steps of `planner` where stage `slow` is `factor` x slower.
trace::Trace RunTrace(const std::string& planner, int steps, int slow, double factor) {
  const PlannerDefinition* definition = *PlannerRegistry::Default().Get(planner);
  const StepSpec spec = *definition->MakeSpec({4, 8});
  Variability variability;
  variability.straggler_stage = slow;
  variability.straggler_factor = factor;
  ModelCosts costs(*Uniform(1e-3)(spec), variability);
  RunOptions options;
  options.steps = steps;
  options.keep_every_step = true;
  const RunReport report = *SimulateSteps(*definition, spec, costs, options);
  trace::Trace all;
  double offset_us = 0;
  for (int k = 0; k < steps; ++k) {
    trace::SimulationTraceOptions o;
    o.step = k + 1;
    o.us_per_unit = 1e6;
    trace::Trace one = trace::TraceFromSimulation(report.steps[k], spec, o);
    for (auto& span : one.spans) span.begin_us += offset_us, span.end_us += offset_us;
    for (auto& s : one.steps) s.begin_us += offset_us, s.end_us += offset_us;
    offset_us = one.steps.back().end_us;
    if (k == 0) all = one, all.spans.clear(), all.steps.clear();
    all.spans.insert(all.spans.end(), one.spans.begin(), one.spans.end());
    all.steps.insert(all.steps.end(), one.steps.begin(), one.steps.end());
  }
  all.virtual_time = false;
  return all;
}

TEST(AutoPlannerTest, ReplansAfterTheWarmUpAndOnlyWhenCostsDrift) {
  PlanRequest request;
  request.options = {4, 8};
  ReplanOptions options;
  options.drift = 0.2;
  AutoReplanner replanner(PlannerRegistry::Default(), request, Uniform(1e-3), "zb_v", options);
  const trace::Trace even = RunTrace("zb_v", 3, -1, 1);
  absl::StatusOr<std::optional<AutoPick>> pick = replanner.AfterStep(even, 1);
  ASSERT_THAT(pick.status(), IsOk());
  EXPECT_FALSE(pick->has_value());  // the warm-up step: no profile yet
  pick = replanner.AfterStep(even, 2);
  ASSERT_THAT(pick.status(), IsOk());
  // The first profile ranks the V placement's planners; whatever it picks stays in it.
  if (pick->has_value()) EXPECT_THAT((*pick)->reason, HasSubstr("the run's trace"));
  const std::string after_first = replanner.current();
  pick = replanner.AfterStep(even, 3);  // same costs: no re-plan
  ASSERT_THAT(pick.status(), IsOk());
  EXPECT_FALSE(pick->has_value());
  EXPECT_EQ(replanner.current(), after_first);
  EXPECT_THAT(SamePlacement(PlannerRegistry::Default(), request.options,
                            *(*PlannerRegistry::Default().Get("zb_v"))->MakeSpec({4, 8})),
              Contains(replanner.current()));
}

}  // namespace
}  // namespace stagehand::runtime::sim
