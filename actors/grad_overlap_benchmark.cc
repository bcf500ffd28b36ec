// Gradient reduction overlapped with backward in three modes, in the same process run: buckets
// issued as the layers they hold finish in their chunk's last W / B (the default), as their
// whole chunk's gradient completes, and only after the stage's whole backward (the baseline).
// The default model (4 layers, d_model 128, 4 heads, byte vocabulary, 8 microbatches of 4 x 64
// tokens), --dp=2 --stages=2 with injected link latency and one bucket size for every mode,
// real compute; each mode's trace summarised (runtime/trace/summary.h: the share of REDUCE_GRAD
// time while some stage of the step still ran I, W or B).
// The 4 compute lanes split the cores' OpenMP threads as launch does (unless OMP_NUM_THREADS is
// set), and hold the next action as launch's default does (--lane_depth=2). Usage:
// grad_overlap_benchmark [latency_us=200] [steps=8] [grad_bucket_mb=0.25] [lane_depth=2]
// Not a test: timings on a shared machine vary; the ratio is what to read.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include "actors/model_pipeline.h"
#include "runtime/trace/recorder.h"
#include "runtime/trace/summary.h"
#include "runtime/util/cores.h"
#include "runtime/util/status_macros.h"

namespace stagehand::actors {
namespace {

constexpr int kMicroBatch = 4, kSeqLen = 64, kMicrobatches = 8, kReplicas = 2, kStages = 2;

struct Measured {
  double step_ms = 0;
  double reduction_ms = 0;   // per step, summed over stages
  double hidden = 0;         // share of it hidden under backward
  double median_hidden = 0;  // the median over steps of each step's share
};

// Each step's hidden share (the summary's row over that step alone), and their median: on a
// shared machine one step whose replicas drifted apart (a reduction waiting for the other
// replica, long after the backward) weighs as one step, not by its length.
double MedianStepHidden(const runtime::trace::Trace& trace) {
  std::set<int64_t> steps;
  for (const runtime::trace::Span& s : trace.spans) steps.insert(s.step);
  std::vector<double> shares;
  for (int64_t step : steps) {
    runtime::trace::Trace one = trace;
    one.spans.clear();
    one.memory.clear();
    one.steps.clear();
    for (const runtime::trace::Span& s : trace.spans) {
      if (s.step == step) one.spans.push_back(s);
    }
    for (const runtime::trace::StepSpan& s : trace.steps) {
      if (s.step == step) one.steps.push_back(s);
    }
    absl::StatusOr<runtime::trace::TraceSummary> summary = runtime::trace::Summarize(one);
    if (summary.ok() && summary->grad_reduction_us > 0) {
      shares.push_back(summary->hidden_grad_reduction_us / summary->grad_reduction_us);
    }
  }
  if (shares.empty()) return 0;
  std::sort(shares.begin(), shares.end());
  const size_t n = shares.size();
  return n % 2 ? shares[n / 2] : (shares[n / 2 - 1] + shares[n / 2]) / 2;
}

const std::vector<int32_t>& Tokens() {
  static const std::vector<int32_t>* tokens = [] {
    auto* t = new std::vector<int32_t>(1 << 16);
    uint32_t x = 12345;
    for (int32_t& token : *t) token = static_cast<int32_t>((x = x * 1664525u + 1013904223u) >> 24);
    return t;
  }();
  return *tokens;
}

// Each compute lane's OpenMP threads, as launch gives them (0: OpenMP's default).
int LaneThreads() {
  return runtime::SplitCores(kReplicas * kStages, runtime::AllowedCores(),
                             std::getenv("OMP_NUM_THREADS"));
}

absl::StatusOr<Measured> Run(const std::string& planner, int chunks_per_stage,
                             runtime::GradReductionStart start, double latency_us, int steps,
                             double bucket_mb, int lane_depth) {
  ASSIGN_OR_RETURN(const runtime::PlannerDefinition* definition,
                   runtime::PlannerRegistry::Default().Get(planner));
  runtime::WindowSampler sampler(&Tokens(), kMicroBatch, kSeqLen, 7);
  runtime::trace::TraceRecorder recorder("grad_overlap_benchmark");
  ModelPipelineOptions o;
  o.model = models::UniformGpt(4, 128, 4, 256, kSeqLen, 1337);
  o.chunk = models::ChunkOptions{kMicroBatch, kSeqLen, kMicrobatches};
  o.planner = definition;
  o.planner_options = {kStages, kMicrobatches, 0};
  o.planner_options.chunks_per_stage = chunks_per_stage;
  o.link.latency_us = latency_us;
  o.dp = kReplicas;
  o.reduction_start = start;
  o.grad_bucket_mb = bucket_mb;
  o.trace = &recorder;
  o.lane_omp_threads = LaneThreads();
  o.lane_depth = lane_depth;
  ASSIGN_OR_RETURN(ModelPipeline mp, BuildModelPipeline(o, &sampler));
  for (int step = 1; step <= steps + 1; ++step) {
    RETURN_IF_ERROR(mp.pipeline->RunStep(step).status());
  }
  // Steady state: the first step (thread start-up, first touch of every buffer, the groups'
  // first exchange) left out, as the step-time median and the all-to-all benchmarks leave it.
  const runtime::trace::Trace trace = runtime::trace::WithoutFirstSteps(recorder.Collect(), 1);
  runtime::trace::SummaryOptions options;
  options.warmup_steps = 0;  // already out
  ASSIGN_OR_RETURN(runtime::trace::TraceSummary summary,
                   runtime::trace::Summarize(trace, options));
  Measured m;
  m.step_ms = summary.step_statistics.median_us / 1e3;
  m.reduction_ms = summary.grad_reduction_us / 1e3 / summary.num_steps;
  m.hidden = summary.hidden_grad_reduction_us / std::max(summary.grad_reduction_us, 1e-9);
  m.median_hidden = MedianStepHidden(trace);
  return m;
}

int Main(int argc, char** argv) {
  const double latency_us = argc > 1 ? std::atof(argv[1]) : 200;
  const int steps = argc > 2 ? std::atoi(argv[2]) : 8;
  const double bucket_mb = argc > 3 ? std::atof(argv[3]) : 0.25;
  const int lane_depth = argc > 4 ? std::atoi(argv[4]) : 2;
  std::printf(
      "dp %d x pp %d, %d microbatches of %d x %d tokens, --link_latency_us=%g "
      "--grad_bucket_mb=%g --lane_depth=%d, %d steps after a warm-up step (median step); "
      "OpenMP threads per lane: %s\n",
      kReplicas, kStages, kMicrobatches, kMicroBatch, kSeqLen, latency_us, bucket_mb, lane_depth,
      steps, LaneThreads() > 0 ? std::to_string(LaneThreads()).c_str() : "OpenMP's default");
  std::printf("%s\n", runtime::DescribeHostParallelism(kReplicas * kStages).c_str());
  std::printf("%-27s %-18s %10s %14s %8s %12s\n", "planner", "reduction starts", "step ms",
              "reduction ms", "hidden", "median step");
  const runtime::GradReductionStart starts[3] = {runtime::GradReductionStart::kAsLayersComplete,
                                                 runtime::GradReductionStart::kAsBucketsComplete,
                                                 runtime::GradReductionStart::kAfterBackward};
  const char* names[3] = {"as layers finish", "as chunks finish", "after backward"};
  for (const auto& [planner, chunks] :
       std::vector<std::pair<std::string, int>>{{"1f1b", 1}, {"interleaved", 2}}) {
    Measured m[3];
    for (int i = 0; i < 3; ++i) {
      absl::StatusOr<Measured> r =
          Run(planner, chunks, starts[i], latency_us, steps, bucket_mb, lane_depth);
      if (!r.ok()) {
        std::fprintf(stderr, "%s: %s\n", planner.c_str(), r.status().ToString().c_str());
        return 1;
      }
      m[i] = *r;
      std::printf("%-27s %-18s %10.1f %14.3f %7.1f%% %11.1f%%\n",
                  (planner + " (" + std::to_string(chunks) + " chunk/stage)").c_str(), names[i],
                  m[i].step_ms, m[i].reduction_ms, 100 * m[i].hidden, 100 * m[i].median_hidden);
    }
    std::printf("%-27s per layer / after-backward: step time x%.3f, hidden %.1f%% vs %.1f%%\n",
                planner.c_str(), m[0].step_ms / m[2].step_ms, 100 * m[0].hidden, 100 * m[2].hidden);
  }
  return 0;
}

}  // namespace
}  // namespace stagehand::actors

int main(int argc, char** argv) { return stagehand::actors::Main(argc, argv); }
