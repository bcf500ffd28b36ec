// Tests of simulated runs: unit costs through the cost model give the zoo's closed forms, a
// straggler slows the steps from its step on, exposed transfer, and planner scoring.
// Not the simulator's own tests (runtime/simulator_test.cc).
#include "runtime/sim/simulate_run.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/planner.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::runtime::sim {
namespace {

using ::stagehand::testing::IsOk;
using ::testing::HasSubstr;

// F = I = W = 1 (B = 2), free transfers: the closed-form setting (tools/simulate --unit_costs).
StepCosts UnitCosts(const StepSpec& spec) {
  StepCosts costs;
  costs.chunks.resize(spec.num_chunks);
  for (ChunkCost& chunk : costs.chunks) {
    chunk.forward = chunk.backward_input = chunk.backward_weight = 1;
  }
  costs.stage_static_bytes.assign(spec.num_stages, 0);
  return costs;
}

RunReport Simulated(const std::string& name, const PlannerOptions& options,
                    Variability variability = {}, int steps = 1) {
  const PlannerDefinition* definition = *PlannerRegistry::Default().Get(name);
  const StepSpec spec = *definition->MakeSpec(options);
  ModelCosts costs(UnitCosts(spec), variability);
  RunOptions run;
  run.steps = steps;
  absl::StatusOr<RunReport> report = SimulateSteps(*definition, spec, costs, run);
  EXPECT_THAT(report.status(), IsOk());
  return report.ok() ? *report : RunReport();
}

TEST(SimulateRunTest, UnitCostsGiveTheZoosClosedForms) {
  // The same figures zoo_test asserts, through the cost model and SimulateSteps.
  EXPECT_DOUBLE_EQ(Simulated("gpipe", {4, 8}).bubble_fraction, 3.0 / 11);  // (P-1)/(M+P-1)
  EXPECT_DOUBLE_EQ(Simulated("1f1b", {4, 8}).bubble_fraction, 3.0 / 11);
  EXPECT_DOUBLE_EQ(Simulated("1f1b", {4, 8}).mean_step_time, 33);                // (M+P-1)(F+B)
  EXPECT_DOUBLE_EQ(Simulated("interleaved", {4, 8}).bubble_fraction, 3.0 / 19);  // v = 2
  EXPECT_DOUBLE_EQ(Simulated("zb_h1", {4, 8}).bubble_fraction, 3.0 / 27);
  EXPECT_DOUBLE_EQ(Simulated("zb_v", {4, 8}).mean_step_time, 51);  // 6M + P - 1
  EXPECT_DOUBLE_EQ(Simulated("adaptive", {4, 8}).mean_step_time, 51);
  for (int p = 2; p <= 4; ++p) {
    for (int m = p; m <= 12; ++m) {
      EXPECT_DOUBLE_EQ(Simulated("interleaved", {p, m, 0, 2}).bubble_fraction,
                       (p - 1.0) / (2 * m + p - 1))
          << "P=" << p << " M=" << m;
    }
  }
  EXPECT_TRUE(Simulated("1f1b", {4, 8}).unit_time);
}

TEST(SimulateRunTest, AStragglerSlowsTheStepsFromItsStep) {
  Variability variability;
  variability.straggler_stage = 2;
  variability.straggler_factor = 2;
  variability.straggler_from_step = 1;
  const RunReport report = Simulated("1f1b", {4, 8}, variability, 3);
  ASSERT_EQ(report.step_times.size(), 3u);
  EXPECT_DOUBLE_EQ(report.step_times[0], 33);
  EXPECT_GT(report.step_times[1], 33);
  EXPECT_DOUBLE_EQ(report.step_times[1], report.step_times[2]);
  EXPECT_DOUBLE_EQ(report.median_step_time, report.step_times[1]);
}

TEST(SimulateRunTest, TheBusiestStageBoundsTheStepTime) {
  // zb_v at unit costs: every stage computes 6M units; the step takes P - 1 more.
  const RunReport zb_v = Simulated("zb_v", {4, 8});
  EXPECT_DOUBLE_EQ(zb_v.busiest_stage_time, 48);
  // A 2x straggler on stage 2 from step 1: step 0 still 6M, step 1 12M; the mean of both.
  Variability variability;
  variability.straggler_stage = 2;
  variability.straggler_factor = 2;
  variability.straggler_from_step = 1;
  const RunReport slow = Simulated("zb_v", {4, 8}, variability, 2);
  EXPECT_EQ(slow.busiest_stage, 2);
  EXPECT_DOUBLE_EQ(slow.busiest_stage_time, (48 + 96) / 2.0);
  EXPECT_GE(slow.mean_step_time, slow.busiest_stage_time);
  EXPECT_THAT(FormatRunReport(slow), HasSubstr("busiest stage s2 computes 72 units"));
}

TEST(SimulateRunTest, ExposedTransferIsTransferNotUnderTheStagesCompute) {
  // Stage 0 computes [0, 1]; its send runs [1, 3]: 2 exposed. Stage 1 computes [3, 4].
  SimResult result;
  result.per_stage = {{{Action{0, ActionKind::kForward, 0, 0}, 0, 1}},
                      {{Action{1, ActionKind::kForward, 1, 0}, 3, 4}}};
  result.transfers = {{Transfer{ActionKind::kSendForward, 0, 1, 1, 0}, 1, 3}};
  EXPECT_THAT(ExposedTransferPerStage(result, 2), ::testing::ElementsAre(2, 2));
}

TEST(SimulateRunTest, ScoresPlannersBestFirstAndFailuresLast) {
  PlanRequest request;
  request.options = {4, 4};  // dualpipe_v needs M >= 2P
  const CostsForSpec costs = [](const StepSpec& spec) -> absl::StatusOr<StepCosts> {
    return UnitCosts(spec);
  };
  const std::vector<PlannerScore> scores =
      ScorePlanners(PlannerRegistry::Default(), {"dualpipe_v", "gpipe", "zb_v"}, request, costs,
                    Variability(), RunOptions());
  ASSERT_EQ(scores.size(), 3u);
  // Unit costs are per chunk: zb_v's 8 chunks do twice gpipe's 4 chunks' units (24 vs 21).
  EXPECT_EQ(scores[0].planner, "gpipe");
  EXPECT_DOUBLE_EQ(scores[0].mean_step_time, 21);
  EXPECT_EQ(scores[1].planner, "zb_v");
  EXPECT_EQ(scores[2].planner, "dualpipe_v");
  EXPECT_THAT(std::string(scores[2].status.message()), HasSubstr("num_microbatches >= 2"));
}

TEST(SimulateRunTest, ReportNamesTheFigures) {
  const std::string text = FormatRunReport(Simulated("1f1b", {4, 8}));
  EXPECT_THAT(text, HasSubstr("step time 33 units"));
  EXPECT_THAT(text, HasSubstr("bubble 27.3%"));
  EXPECT_THAT(text, HasSubstr("MFU n/a"));
}

}  // namespace
}  // namespace stagehand::runtime::sim
