// Tracing overhead: the default launch configuration (4 layers, d_model 128, 4 heads, seq
// 64, micro batch 4, 8 microbatches, 4 stages, 1f1b) trained for N steps untraced and N
// steps traced, interleaved step by step (alternating which goes first), on synthetic
// tokens; prints both median step times and their ratio. Not a model benchmark
// (tools/train_step_benchmark is).
#include <algorithm>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "actors/model_pipeline.h"
#include "models/gpt_config.h"
#include "runtime/action.h"
#include "runtime/data/text_corpus.h"
#include "runtime/planner.h"
#include "runtime/trace/recorder.h"

ABSL_FLAG(int, steps, 40, "steps of each pipeline (the first of each is not timed)");

namespace stagehand {
namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

int Run(int steps) {
  auto planner = runtime::PlannerRegistry::Default().Get("1f1b");
  if (!planner.ok()) return 1;
  actors::ModelPipelineOptions options;
  options.model = models::UniformGpt(4, 128, 4, 256, 64, 1337);
  options.chunk.micro_batch_size = 4;
  options.chunk.seq_len = 64;
  options.chunk.num_microbatches = 8;
  options.planner = *planner;
  options.planner_options = {4, 8, 0};
  // Synthetic byte tokens: the step's cost does not depend on their values.
  std::vector<int32_t> tokens(1 << 20);
  std::mt19937 rng(7);
  for (int32_t& t : tokens) t = static_cast<int32_t>(rng() % 256);
  runtime::WindowSampler sampler(&tokens, options.chunk.micro_batch_size, options.chunk.seq_len, 1);

  runtime::trace::TraceRecorder recorder("trace_overhead_benchmark");
  auto untraced = actors::BuildModelPipeline(options, &sampler);
  options.trace = &recorder;
  auto traced = actors::BuildModelPipeline(options, &sampler);
  if (!untraced.ok() || !traced.ok()) {
    std::fprintf(stderr, "%s\n",
                 std::string((untraced.ok() ? traced : untraced).status().message()).c_str());
    return 1;
  }
  std::vector<double> plain_ms, traced_ms;
  for (int step = 1; step <= steps; ++step) {
    for (int turn = 0; turn < 2; ++turn) {
      const bool trace_turn = (turn == 0) == (step % 2 == 0);  // alternate who goes first
      actors::ModelPipeline& mp = trace_turn ? *traced : *untraced;
      auto outcome = mp.pipeline->RunStep(step);
      if (!outcome.ok()) {
        std::fprintf(stderr, "%s\n", std::string(outcome.status().message()).c_str());
        return 1;
      }
      if (step == 1) continue;  // warm-up
      (trace_turn ? traced_ms : plain_ms).push_back(outcome->seconds * 1e3);
    }
  }
  const runtime::trace::Trace trace = recorder.Collect();
  const double plain = Median(plain_ms), with_trace = Median(traced_ms);
  const double events_per_step = double(trace.spans.size() + trace.memory.size()) / steps;
  // The cost of one record on its own: a clock read and an append to a lane buffer.
  runtime::trace::TraceRecorder alone;
  if (!alone.Configure(1, 1, 1).ok()) return 1;
  runtime::trace::TraceRecorder::ComputeLane* lane = alone.compute(0);
  const int kRecords = 1 << 20;
  const int64_t begin = runtime::trace::NowNanos();
  for (int i = 0; i < kRecords; ++i) {
    const int64_t now = runtime::trace::NowNanos();
    lane->Record(runtime::ActionKind::kForward, 0, i, now, now);
  }
  const double ns_per_record = double(runtime::trace::NowNanos() - begin) / kRecords;
  std::printf(
      "tracing overhead, default launch config (4 layers, d_model 128, P=4, M=8, 1f1b), "
      "%d steps each, interleaved\n",
      steps - 1);
  std::printf("  untraced  median step %.2f ms\n", plain);
  std::printf("  traced    median step %.2f ms (%zu events recorded, %.0f per step)\n", with_trace,
              trace.spans.size() + trace.memory.size(), events_per_step);
  std::printf("  ratio traced/untraced %.4f\n", with_trace / plain);
  std::printf(
      "  one record (clock read + append) %.1f ns: %.0f per step = %.4f%% of the untraced step\n",
      ns_per_record, events_per_step, 100 * events_per_step * ns_per_record * 1e-6 / plain);
  return 0;
}

}  // namespace
}  // namespace stagehand

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int steps = absl::GetFlag(FLAGS_steps);
  if (steps < 3) {
    std::fprintf(stderr, "trace_overhead_benchmark: error: --steps must be at least 3\n");
    return 2;
  }
  return stagehand::Run(steps);
}
