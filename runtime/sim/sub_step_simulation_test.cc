// Tests of simulated MoE sub-steps: the cost model's split of an action into sub-steps, the
// simulator's sub-step mode through the stage loop (as the actor runtime runs it), and the
// all-to-all hidden share the trace summary reads from it.
// Not tests of the sub-step graph itself (runtime/sub_step_test.cc).
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/planner.h"
#include "runtime/sim/cost_model.h"
#include "runtime/sim/simulate_run.h"
#include "runtime/simulator.h"
#include "runtime/sub_step.h"
#include "runtime/trace/from_simulation.h"
#include "runtime/trace/summary.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::runtime::sim {
namespace {

using ::stagehand::testing::IsOk;
using ::testing::HasSubstr;

// GPT-2 with 8 experts (2 a token) over 8 expert-parallel ranks, on H100s over InfiniBand.
Workload MoeWorkload() {
  Workload workload = *WorkloadPreset("gpt2");
  workload.num_experts = 8;
  workload.experts_per_token = 2;
  workload.expert_parallel = 8;
  return workload;
}

StepSpec SpecOf(const std::string& planner, const PlannerOptions& options) {
  return *(*PlannerRegistry::Default().Get(planner))->MakeSpec(options);
}

TEST(SubStepSimulationTest, AnActionsSubStepsAddUpToItsTime) {
  const StepSpec spec = SpecOf("1f1b", {4, 8});
  const StepCosts costs = *EstimateStepCosts(MoeWorkload(), *DevicePreset("h100_ib"), spec);
  ASSERT_EQ(costs.sub_steps.size(), 4u);  // every chunk, 3 MoE layers each
  EXPECT_EQ(costs.sub_steps.at(1).first_layer, 3);
  EXPECT_EQ(costs.sub_steps.at(1).is_moe, std::vector<bool>(3, true));
  EXPECT_EQ(costs.expert_parallel, 8);
  ModelCosts model(costs, Variability());
  for (ActionKind kind : {ActionKind::kForward, ActionKind::kBackward}) {
    for (int chunk = 0; chunk < 4; ++chunk) {
      const Action action{chunk, kind, chunk, 0};
      const ChunkLayers& layers = costs.sub_steps.at(chunk);
      const std::vector<SubStep> steps =
          *SplitIntoSubSteps(action, layers.first_layer, layers.is_moe);
      double total = 0, all_to_all = 0;
      for (int i = 0; i < static_cast<int>(steps.size()); ++i) {
        const double time = model.SubStepTime(SubStepOrder{steps[i], i, int(steps.size())});
        EXPECT_GE(time, 0);
        total += time;
        if (IsCommunication(steps[i].part)) all_to_all += time;
      }
      EXPECT_NEAR(total, model.BaseTime(action), 1e-12) << ActionToString(action);
      EXPECT_NEAR(all_to_all, 2 * 3 * costs.chunks[chunk].all_to_all, 1e-12);
      EXPECT_GT(all_to_all, 0);
    }
  }
  // A whole action (a chunk run whole) costs ComputeTime.
  EXPECT_DOUBLE_EQ(
      model.SubStepTime(SubStepOrder{SubStep{Action{0, ActionKind::kForward, 0, 0}}, 0, 1, true}),
      model.BaseTime(Action{0, ActionKind::kForward, 0, 0}));
}

TEST(SubStepSimulationTest, DenseModelsAndChunksWithoutLayersRunWhole) {
  const StepSpec spec = SpecOf("interleaved", {2, 4, 0, 4});  // 8 chunks, 12 layers
  Workload dense = *WorkloadPreset("gpt2");
  EXPECT_TRUE(EstimateStepCosts(dense, *DevicePreset("h100"), spec)->sub_steps.empty());
  Workload moe = MoeWorkload();
  moe.model.layers.resize(4);  // 4 layers over 8 chunks: every other chunk has none
  const StepCosts costs = *EstimateStepCosts(moe, *DevicePreset("h100"), spec);
  ASSERT_EQ(costs.sub_steps.size(), 8u);
  EXPECT_EQ(costs.sub_steps.at(0).is_moe, std::vector<bool>{false});  // no layer: whole
  EXPECT_EQ(costs.sub_steps.at(1).is_moe, std::vector<bool>{true});
}

RunReport SimulatedMoe(const std::string& planner, int expert_parallel) {
  const StepSpec spec = SpecOf(planner, {4, 8});
  Workload workload = MoeWorkload();
  workload.expert_parallel = expert_parallel;
  ModelCosts model(*EstimateStepCosts(workload, *DevicePreset("h100_ib"), spec), Variability());
  absl::StatusOr<RunReport> report =
      SimulateSteps(**PlannerRegistry::Default().Get(planner), spec, model, RunOptions());
  EXPECT_THAT(report.status(), IsOk());
  return report.ok() ? *report : RunReport();
}

double HiddenAllToAll(const RunReport& report) {
  trace::SimulationTraceOptions options;
  options.us_per_unit = 1e6;
  const trace::TraceSummary summary =
      *trace::Summarize(trace::TraceFromSimulation(report.last, report.spec, options));
  EXPECT_GT(summary.a2a_us, 0);
  EXPECT_THAT(trace::FormatAllToAll(summary), HasSubstr("hidden under the same stage's compute"));
  return summary.a2a_hidden_fraction();
}

TEST(SubStepSimulationTest, AnOverlappingPlannerHidesAllToAllUnderAnotherMicrobatch) {
  const RunReport whole = SimulatedMoe("1f1b", 8);  // does not overlap sub-steps: whole
  EXPECT_TRUE(whole.last.sub_steps.empty());
  for (int ep : {2, 8}) {  // 8: the communication lane in start order (ordered)
    const RunReport overlap = SimulatedMoe("1f1b_overlap", ep);
    ASSERT_EQ(overlap.last.sub_steps.size(), 4u);
    EXPECT_EQ(overlap.num_actions, whole.num_actions);
    // Every action spans its sub-steps, and every sub-step of it ran.
    int sub_steps = 0;
    for (const auto& stage : overlap.last.sub_steps) sub_steps += stage.size();
    EXPECT_EQ(sub_steps, 4 * 8 * 2 * 3 * 5);  // chunks x M x (F, B) x layers x parts
    for (const auto& stage : overlap.last.per_stage) {
      for (const TimedAction& timed : stage) EXPECT_LT(timed.start, timed.end);
    }
    const double hidden = HiddenAllToAll(overlap);
    EXPECT_GT(hidden, 0) << "ep " << ep;
    EXPECT_LE(hidden, 1);
  }
  EXPECT_LT(SimulatedMoe("1f1b_overlap", 2).mean_step_time, whole.mean_step_time);
}

TEST(SubStepSimulationTest, UnitCostsShareAnActionEvenlyAmongItsSubSteps) {
  // One MoE layer per chunk: F (1 unit) and B (2) split into 5 sub-steps each, 2 of them
  // (dispatch, combine) on the communication lane.
  const PlannerDefinition& overlap = **PlannerRegistry::Default().Get("1f1b_overlap");
  const StepSpec spec = *overlap.MakeSpec({4, 8});
  SimulationOptions options;
  for (int c = 0; c < 4; ++c) options.sub_steps[c] = ChunkLayers{c, {true}};
  ConstantCosts unit{CostModel()};
  const absl::StatusOr<SimResult> result = SimulateWithCosts(overlap, spec, unit, options);
  ASSERT_THAT(result.status(), IsOk());
  EXPECT_EQ(result->num_actions, 4 * 8 * 2);
  for (int s = 0; s < 4; ++s) {
    EXPECT_NEAR(result->stage_busy[s], 8 * 3 * 3.0 / 5, 1e-9) << s;  // compute lane only
    ASSERT_EQ(result->sub_steps[s].size(), 8 * 2 * 5u);
    for (const TimedSubStep& timed : result->sub_steps[s]) {
      const double whole = timed.order.step.action.kind == ActionKind::kForward ? 1 : 2;
      EXPECT_NEAR(timed.end - timed.start, whole / 5, 1e-9);  // end - start rounds
    }
  }
  EXPECT_LT(result->step_time, 33);  // whole actions: (M + P - 1)(F + B)
  // Without the layout (or with a planner that does not overlap) the actions run whole.
  EXPECT_DOUBLE_EQ(SimulateWithCosts(overlap, spec, unit)->step_time, 33);
  EXPECT_DOUBLE_EQ(
      SimulateWithCosts(**PlannerRegistry::Default().Get("1f1b"), spec, unit, options)->step_time,
      33);
}

TEST(SubStepSimulationTest, SubStepsOnSharedCoresAreRefused) {
  const StepSpec spec = SpecOf("1f1b_overlap", {2, 4});
  ModelCosts model(*EstimateStepCosts(MoeWorkload(), *DevicePreset("h100_ib"), spec),
                   Variability());
  RunOptions options;
  options.compute_lanes = 1;
  absl::StatusOr<RunReport> report =
      SimulateSteps(**PlannerRegistry::Default().Get("1f1b_overlap"), spec, model, options);
  EXPECT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(report.status().message()), HasSubstr("shared cores"));
}

}  // namespace
}  // namespace stagehand::runtime::sim
