// Tests of the cost model: presets, the GPT estimate's shape (I > F > 0, W, transfers,
// memory), the memory cap, profiles from a trace, jitter and stragglers.
// Not a calibration against hardware: tools/slow_stage_bench.sh measures.
#include "runtime/sim/cost_model.h"

#include <cmath>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/step_spec.h"
#include "runtime/trace/from_simulation.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::runtime::sim {
namespace {

using ::stagehand::testing::IsOk;
using ::stagehand::testing::StatusIs;
using ::testing::HasSubstr;

StepSpec Standard(int stages, int microbatches) {
  StepSpec spec;
  spec.num_stages = stages;
  spec.num_microbatches = microbatches;
  spec.num_chunks = stages;
  spec.chunk_to_stage = StandardPlacement(stages, 1);
  spec.split_backward = true;
  return spec;
}

TEST(CostModelTest, PresetsHaveTheIssuesFigures) {
  absl::StatusOr<DeviceSpec> h200 = DevicePreset("h200");
  ASSERT_THAT(h200.status(), IsOk());
  EXPECT_DOUBLE_EQ(h200->matmul_flops, 790e12);
  EXPECT_DOUBLE_EQ(h200->memory_bandwidth, 4.8e12);
  EXPECT_DOUBLE_EQ(DevicePreset("h100")->memory_bandwidth, 3.35e12);
  EXPECT_THAT(DevicePreset("tpu").status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("--device=tpu is not a preset")));
  EXPECT_THAT(WorkloadPreset("llama").status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("--model=llama")));
}

TEST(CostModelTest, EstimateHasTheShapeOfAGptStep) {
  const Workload gpt2 = *WorkloadPreset("gpt2");
  const DeviceSpec h200 = *DevicePreset("h200");
  absl::StatusOr<StepCosts> costs = EstimateStepCosts(gpt2, h200, Standard(4, 8));
  ASSERT_THAT(costs.status(), IsOk());
  ASSERT_EQ(costs->chunks.size(), 4u);
  const ChunkCost& middle = costs->chunks[1];  // 3 layers, no embedding or head
  EXPECT_GT(middle.forward, 0);
  EXPECT_GT(middle.backward_input, middle.forward);  // attention backward is twice forward's
  EXPECT_GT(middle.backward_weight, 0);
  EXPECT_GT(costs->chunks[3].forward, middle.forward);  // the head and loss
  // 3 layers x 24 n C^2 matmul FLOPs at 790 TFLOP/s bound the forward from below.
  const double n = 4.0 * 1024, c = 768;
  EXPECT_GT(middle.forward, 3 * 24 * n * c * c / 790e12);
  EXPECT_NEAR(middle.flops, 3 * (72 * n * c * c + 12 * n * 1024 * c), 1);
  EXPECT_DOUBLE_EQ(costs->transfer_bytes, n * c * 2);
  EXPECT_DOUBLE_EQ(costs->transfer, h200.link_latency + n * c * 2 / h200.link_bandwidth);
  EXPECT_GT(costs->stage_static_bytes[0], costs->stage_static_bytes[1]);  // the embedding
}

TEST(CostModelTest, MemoryCapBecomesActivationsPerStage) {
  const StepSpec spec = Standard(2, 8);
  StepCosts costs;
  costs.chunks.resize(2);
  costs.chunks[0].activation_bytes = 1e9;
  costs.chunks[1].activation_bytes = 2e9;
  costs.stage_static_bytes = {4e9, 4e9};
  EXPECT_EQ(*MaxInflightForMemory(costs, spec, 14e9), 5);  // stage 1: (14 - 4) / 2
  EXPECT_EQ(*MaxInflightForMemory(costs, spec, 0), 0);     // no cap
  EXPECT_EQ(*MaxInflightForMemory(costs, spec, 5e9), 1);   // at least one
  EXPECT_THAT(MaxInflightForMemory(costs, spec, 3e9).status(),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("stage 0 needs 4 GB")));
}

TEST(CostModelTest, ProfileTakesTheMedianOfEachChunksActions) {
  // A unit-cost simulated trace with F = 2, B = 6: the profile reads them back (in seconds).
  const StepSpec spec = [] {
    StepSpec s = Standard(2, 4);
    s.split_backward = false;
    return s;
  }();
  SimResult result;
  result.per_stage.resize(2);
  double t = 0;
  for (int mb = 0; mb < 4; ++mb, t += 8) {
    result.per_stage[0].push_back({Action{0, ActionKind::kForward, 0, mb}, t, t + 2});
    result.per_stage[1].push_back({Action{1, ActionKind::kBackward, 1, mb}, t, t + 6});
  }
  result.step_time = t;
  trace::SimulationTraceOptions options;
  options.us_per_unit = 1e6;  // one unit = one second
  trace::Trace trace = trace::TraceFromSimulation(result, spec, options);
  trace.virtual_time = false;
  StepCosts estimate;
  estimate.chunks.resize(2);
  estimate.sub_steps[0] = ChunkLayers{0, {true}};  // an MoE estimate: measured actions run whole
  absl::StatusOr<StepCosts> profile = StepCostsFromTrace(trace, spec, estimate);
  ASSERT_THAT(profile.status(), IsOk());
  EXPECT_TRUE(profile->sub_steps.empty());
  EXPECT_DOUBLE_EQ(profile->chunks[0].forward, 2);
  EXPECT_DOUBLE_EQ(profile->chunks[1].backward_input, 3);  // a fused B split evenly
  EXPECT_DOUBLE_EQ(profile->chunks[1].backward_weight, 3);
  trace.spans.clear();
  EXPECT_THAT(StepCostsFromTrace(trace, spec, estimate).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--profile")));
}

// A compute span of F c0 on `stage` in `step`, [begin, end] seconds.
trace::Span Forward(int stage, int64_t step, double begin, double end) {
  trace::Span span;
  span.lane = trace::Lane::kCompute;
  span.stage = stage;
  span.kind = ActionKind::kForward;
  span.step = step;
  span.begin_us = begin * 1e6;
  span.end_us = end * 1e6;
  return span;
}

TEST(CostModelTest, ProfileLeavesOutWarmUpAndDisturbedStepsAndAddsTheStepOverhead) {
  const StepSpec spec = Standard(1, 1);
  trace::Trace trace;
  trace.num_stages = trace.num_chunks = trace.num_microbatches = 1;
  // Step 1 (warm-up) F takes 9 s; steps 2-4 take 2 s in a 3 s step; step 5 is disturbed (8 s).
  trace.spans = {Forward(0, 1, 0, 9), Forward(0, 2, 10, 12), Forward(0, 3, 13, 15),
                 Forward(0, 4, 16, 18), Forward(0, 5, 19, 27)};
  trace.steps = {{1, 0, 10}, {2, 10, 13}, {3, 13, 16}, {4, 16, 19}, {5, 19, 28}};
  for (auto& step : trace.steps) step.begin_us *= 1e6, step.end_us *= 1e6;
  StepCosts estimate;
  estimate.chunks.resize(1);
  absl::StatusOr<StepCosts> profile = StepCostsFromTrace(trace, spec, estimate);
  ASSERT_THAT(profile.status(), IsOk());
  EXPECT_DOUBLE_EQ(profile->chunks[0].forward, 2);
  EXPECT_DOUBLE_EQ(profile->step_overhead, 1);  // 3 s steps, 2 s windows
  ProfileOptions keep_all;
  keep_all.warmup_steps = 0;
  keep_all.outlier_factor = 0;
  profile = StepCostsFromTrace(trace, spec, estimate, keep_all);
  ASSERT_THAT(profile.status(), IsOk());
  EXPECT_DOUBLE_EQ(profile->chunks[0].forward, 2);  // the median of 9, 2, 2, 2, 8
  keep_all.warmup_steps = 10;                       // would leave no step: keeps them all
  EXPECT_THAT(StepCostsFromTrace(trace, spec, estimate, keep_all).status(), IsOk());
}

TEST(CostModelTest, ProfileWithFewerCoresThanStagesTakesEachSpansShareOfACore) {
  const StepSpec spec = Standard(2, 1);
  trace::Trace trace;
  trace.num_stages = 2;
  trace.num_chunks = 2;
  trace.num_microbatches = 1;
  // Two stages compute [0, 4] together on one core: each had half of it, 2 s of its own.
  trace::Span second = Forward(1, 1, 0, 4);
  second.chunk = 1;
  trace.spans = {Forward(0, 1, 0, 4), second};
  StepCosts estimate;
  estimate.chunks.resize(2);
  ProfileOptions one_core;
  one_core.cores = 1;
  absl::StatusOr<StepCosts> profile = StepCostsFromTrace(trace, spec, estimate, one_core);
  ASSERT_THAT(profile.status(), IsOk());
  EXPECT_DOUBLE_EQ(profile->chunks[0].forward, 2);
  EXPECT_DOUBLE_EQ(profile->chunks[1].forward, 2);
  profile = StepCostsFromTrace(trace, spec, estimate);  // a core each: as measured
  ASSERT_THAT(profile.status(), IsOk());
  EXPECT_DOUBLE_EQ(profile->chunks[0].forward, 4);
}

TEST(CostModelTest, DataParallelAllReduceAndExpertAllToAllFollowTheirFormulas) {
  DeviceSpec link;
  link.link_bandwidth = 100;
  link.link_latency = 1;
  // Ring all-reduce of 400 bytes over 4 ranks: 2 * 3/4 * 400 / 100 + 2 * 3 * 1 = 12 s.
  EXPECT_DOUBLE_EQ(AllReduceSeconds(400, 4, link), 12);
  EXPECT_DOUBLE_EQ(AllReduceSeconds(400, 1, link), 0);
  // All-to-all of 400 bytes per rank over 4 ranks: 3/4 * 4 + 3 = 6 s.
  EXPECT_DOUBLE_EQ(AllToAllSeconds(400, 4, link), 6);

  const DeviceSpec h200 = *DevicePreset("h200");
  Workload dense = *WorkloadPreset("gpt2");
  const StepSpec spec = Standard(4, 8);
  const StepCosts alone = *EstimateStepCosts(dense, h200, spec);
  EXPECT_THAT(alone.stage_reduce, ::testing::Each(0.0));
  dense.data_parallel = 8;
  const StepCosts replicated = *EstimateStepCosts(dense, h200, spec);
  EXPECT_DOUBLE_EQ(replicated.stage_reduce[1],
                   AllReduceSeconds(4 * replicated.chunks[1].parameters, 8, h200));
  Workload moe = *WorkloadPreset("gpt2");
  moe.num_experts = 8;
  moe.expert_parallel = 4;
  const StepCosts experts = *EstimateStepCosts(moe, h200, spec);
  EXPECT_GT(experts.chunks[1].forward, alone.chunks[1].forward);  // 2 experts + all-to-alls
  EXPECT_GT(experts.chunks[1].parameters, alone.chunks[1].parameters);
  moe.expert_parallel = 3;  // does not divide 8 experts
  EXPECT_THAT(EstimateStepCosts(moe, h200, spec).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expert_parallel")));
}

TEST(CostModelTest, StragglerSlowsItsStageFromItsStep) {
  StepCosts costs;
  costs.chunks.resize(2);
  costs.chunks[0].forward = costs.chunks[1].forward = 1;
  Variability variability;
  variability.straggler_stage = 1;
  variability.straggler_factor = 1.3;
  variability.straggler_from_step = 2;
  ModelCosts model(costs, variability);
  const Action slow{1, ActionKind::kForward, 1, 0};
  model.set_step(1);
  EXPECT_DOUBLE_EQ(model.ComputeTime(slow), 1);
  model.set_step(2);
  EXPECT_DOUBLE_EQ(model.ComputeTime(slow), 1.3);
  EXPECT_DOUBLE_EQ(model.ComputeTime(Action{0, ActionKind::kForward, 0, 0}), 1);
}

TEST(CostModelTest, JitterHasMeanOneAndRepeatsWithItsSeed) {
  StepCosts costs;
  costs.chunks.resize(1);
  costs.chunks[0].forward = 1;
  Variability variability;
  variability.jitter = JitterDistribution::kUniform;
  variability.spread = 0.2;
  ModelCosts a(costs, variability), b(costs, variability);
  const Action f{0, ActionKind::kForward, 0, 0};
  double sum = 0, lo = 2, hi = 0;
  for (int i = 0; i < 20000; ++i) {
    const double x = a.ComputeTime(f);
    EXPECT_DOUBLE_EQ(x, b.ComputeTime(f));
    sum += x, lo = std::min(lo, x), hi = std::max(hi, x);
  }
  EXPECT_NEAR(sum / 20000, 1, 0.01);
  EXPECT_GE(lo, 0.8);
  EXPECT_LE(hi, 1.2);
  EXPECT_LT(lo, 0.81);
  EXPECT_GT(hi, 1.19);
}

TEST(CostModelTest, BadVariabilityIsNamed) {
  Variability v;
  v.jitter = JitterDistribution::kUniform;
  v.spread = 1.5;
  EXPECT_THAT(ValidateVariability(v, 4),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--jitter spread = 1.5")));
  v = Variability();
  v.straggler_stage = 4;
  EXPECT_THAT(ValidateVariability(v, 4),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--straggler stage 4")));
  JitterDistribution d;
  EXPECT_TRUE(ParseJitterDistribution("lognormal", &d));
  EXPECT_FALSE(ParseJitterDistribution("cauchy", &d));
}

}  // namespace
}  // namespace stagehand::runtime::sim
