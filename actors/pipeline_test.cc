// Tests of the actor runtime's behaviour on synthetic work: stalls are reported with what
// each stage waits for, the memory cap is enforced, and overlap of transfers emerges.
#include <chrono>
#include <cstdio>

#include "actors/model_pipeline.h"
#include "gtest/gtest.h"
#include "runtime/planners/one_f_one_b.h"
#include "runtime/trace/chrome_json.h"
#include "runtime/trace/summary.h"

namespace stagehand::actors {
namespace {

using runtime::Action;
using runtime::ActionKind;

// A planner whose stage 1 never picks anything: the step can only stall.
class StuckDefinition : public runtime::OneFOneBDefinition {
 public:
  class Never : public runtime::Planner {
   public:
    std::optional<Action> Next(const std::vector<Action>&, const runtime::StageState&) override {
      return std::nullopt;
    }
  };
  std::string name() const override { return "stuck"; }
  std::unique_ptr<runtime::Planner> MakePlanner(const runtime::StepSpec& spec,
                                                int stage) const override {
    if (stage == 1) return std::make_unique<Never>();
    return OneFOneBDefinition::MakePlanner(spec, stage);
  }
};

// 1F1B's plan, but its spec caps activations below what stage 0 needs.
class OverCapDefinition : public runtime::OneFOneBDefinition {
 public:
  absl::StatusOr<runtime::StepSpec> MakeSpec(const runtime::PlannerOptions& o) const override {
    runtime::PlannerOptions uncapped = o;
    uncapped.max_inflight = 0;
    absl::StatusOr<runtime::StepSpec> spec = OneFOneBDefinition::MakeSpec(uncapped);
    if (spec.ok()) spec->max_inflight = o.max_inflight;
    return spec;
  }
};

TEST(PipelineTest, StallIsReportedWithWhatEachStageWaitsFor) {
  StuckDefinition stuck;
  auto pipeline = BuildSyntheticPipeline(&stuck, {3, 4, 0}, {}, {}, false);
  ASSERT_TRUE(pipeline.ok()) << pipeline.status();
  auto outcome = (*pipeline)->RunStep(1);
  ASSERT_FALSE(outcome.ok());
  const std::string message(outcome.status().message());
  std::printf("%s\n", message.c_str());
  EXPECT_NE(message.find("stalled"), std::string::npos) << message;
  EXPECT_NE(message.find("s1"), std::string::npos) << message;
  EXPECT_NE(message.find("s2 F c2 mb0 waits for activation from s1"), std::string::npos) << message;
  // A broken pipeline refuses further steps instead of hanging.
  EXPECT_EQ((*pipeline)->RunStep(2).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(PipelineTest, MemoryCapIsReportedNotExceeded) {
  OverCapDefinition over_cap;
  auto pipeline = BuildSyntheticPipeline(&over_cap, {4, 8, 2}, {}, {}, false);
  ASSERT_TRUE(pipeline.ok()) << pipeline.status();
  auto outcome = (*pipeline)->RunStep(1);
  ASSERT_FALSE(outcome.ok());
  const std::string message(outcome.status().message());
  EXPECT_NE(message.find("stage 0"), std::string::npos) << message;
  EXPECT_NE(message.find("max_inflight"), std::string::npos) << message;
}

TEST(PipelineTest, TransfersOverlapCompute) {
  // F = 2 ms, fused backward = 4 ms, every transfer 2 ms of link latency.
  runtime::SyntheticDurations d;
  d.forward_us = 2000;
  d.backward_input_us = 2000;
  d.backward_weight_us = 2000;
  d.payload_floats = 1024;
  const int P = 4, M = 8;
  const LinkModel link{2000.0, 0.0};
  auto def = runtime::PlannerRegistry::Default().Get("1f1b");
  ASSERT_TRUE(def.ok());
  auto pipeline = BuildSyntheticPipeline(*def, {P, M, 0}, d, link, false);
  ASSERT_TRUE(pipeline.ok()) << pipeline.status();
  ASSERT_TRUE((*pipeline)->RunStep(1).ok());  // warm-up
  auto outcome = (*pipeline)->RunStep(2);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  double compute = 0;
  for (double b : outcome->busy_seconds) compute += b;
  const int transfers = 2 * (P - 1) * M;
  const double serial = compute + transfers * link.latency_us * 1e-6;
  // Ideal 1F1B: (M + P - 1) * (F + B) + 2 (P - 1) latency = 66 + 12 ms vs 288 ms serial.
  EXPECT_LT(outcome->seconds, 0.5 * serial) << "step " << outcome->seconds << " s, compute "
                                            << compute << " s, serial " << serial << " s";
}

// --dp=2: each stage's buckets are summed on its communication lane as REDUCE_GRAD spans
// (one per bucket and step), which survive the Chrome JSON round trip and give the summary
// its gradient-reduction row. A replica failing aborts the others' collectives instead of
// leaving them waiting.
TEST(PipelineTest, DataParallelStepsTraceReduceGradOnTheCommunicationLane) {
  std::string text;
  for (int i = 0; i < 40; ++i) text += "data parallel replicas sum their gradients. ";
  const std::vector<int32_t> tokens(text.begin(), text.end());
  runtime::WindowSampler sampler(&tokens, 2, 8, 5);
  auto def = runtime::PlannerRegistry::Default().Get("1f1b");
  ASSERT_TRUE(def.ok());
  runtime::trace::TraceRecorder recorder("dp test");
  ModelPipelineOptions o;
  o.model = models::UniformGpt(4, 16, 2, 256, 8, 11);
  o.chunk = models::ChunkOptions{2, 8, 4};
  o.planner = *def;
  o.planner_options = {2, 4, 0};
  o.dp = 2;
  o.grad_bucket_mb = 0.01;  // 2621 floats: several buckets per chunk
  o.trace = &recorder;
  auto mp = BuildModelPipeline(o, &sampler);
  ASSERT_TRUE(mp.ok()) << mp.status();
  int buckets = 0;
  for (const auto& chunk : mp->chunks) buckets += (chunk->params().size() + 2620) / 2621;
  for (int64_t step = 1; step <= 2; ++step) {
    auto outcome = mp->pipeline->RunStep(step);
    ASSERT_TRUE(outcome.ok()) << outcome.status();
  }
  const runtime::trace::Trace trace = recorder.Collect();
  int reduce_spans = 0;
  for (const runtime::trace::Span& s : trace.spans) {
    if (s.kind != ActionKind::kReduceGrad) continue;
    ++reduce_spans;
    EXPECT_EQ(s.lane, runtime::trace::Lane::kSend);
    EXPECT_GT(s.bytes, 0);
  }
  EXPECT_EQ(reduce_spans, 2 * buckets);
  auto read = runtime::trace::FromChromeJson(runtime::trace::ToChromeJson(trace));
  ASSERT_TRUE(read.ok()) << read.status();
  auto summary = runtime::trace::Summarize(*read);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_GT(summary->grad_reduction_us, 0);
  EXPECT_LE(summary->hidden_grad_reduction_us, summary->grad_reduction_us);
  EXPECT_NE(runtime::trace::FormatSummary(*summary).find("gradient reduction"), std::string::npos);
}

}  // namespace
}  // namespace stagehand::actors
