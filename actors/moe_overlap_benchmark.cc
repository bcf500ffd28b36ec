// Benchmark of fine-grained callables: one MoE model trained with 1F1B whose MoE actions run
// as sub-steps one action at a time ("1f1b", the baseline) and with 1f1b_overlap, and the same
// for DualPipeV (its F&B pairs not overlapped, then overlapped), all in one go, with a link
// latency injected into every dispatch and combine (about one experts sub-step's compute,
// measured first). Each run is traced (runtime/trace) and its trace summary gives the
// all-to-all time per step and the share of it hidden under the same stage's compute (sub-steps
// of another microbatch): the numbers `trace summary` prints. Then the step-time ratios. Not a
// test, and not expert parallelism across processes: the all-to-all is the in-process dispatch
// / combine plus the injected latency.
//   moe_overlap_benchmark [--microbatches=M] [--steps=N] [--trace_dir=DIR]
// --trace_dir writes each run's trace as DIR/<planner>.json (for tools/trace render).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "actors/pipeline.h"
#include "models/gpt_config.h"
#include "runtime/planners/dualpipe_v.h"
#include "runtime/planners/one_f_one_b.h"
#include "runtime/trace/chrome_json.h"
#include "runtime/trace/recorder.h"
#include "runtime/trace/summary.h"
#include "runtime/train/forwarding_stage_work.h"
#include "runtime/train/stage_work.h"
#include "runtime/train/training.h"
#include "runtime/util/cores.h"
#include "runtime/util/status_macros.h"

namespace stagehand::actors {
namespace {

using runtime::SubStepLane;
using runtime::SubStepOrder;

// The baselines: the plans of 1F1B and DualPipeV with MoE actions as sub-steps, one action
// at a time (no pair overlaps), so that they pay the same injected latency as the overlapped
// planners.
class SubStepOneFOneB : public runtime::OneFOneBDefinition {
 public:
  bool OverlapsSubSteps() const override { return true; }  // sub-steps; its planner: no pairs
};
class SubStepDualPipeV : public runtime::DualPipeVDefinition {
 public:
  std::unique_ptr<runtime::Planner> MakePlanner(const runtime::StepSpec& spec,
                                                int stage) const override {
    return std::make_unique<runtime::OrderedPlanner>(runtime::DualPipeVOrder(spec, stage),
                                                     /*overlap_pairs=*/false);
  }
};

constexpr int kB = 2, kT = 128;  // microbatch: sequences, tokens each

// A ModelStageWork that sleeps `latency_us` in every dispatch and combine (the link).
class TimedWork : public runtime::ForwardingStageWork {
 public:
  TimedWork(std::unique_ptr<runtime::StageWork> inner, const double* latency_us)
      : ForwardingStageWork(std::move(inner)), latency_us_(latency_us) {}
  absl::Status RunSubStep(const SubStepOrder& order, const runtime::Payload* input,
                          runtime::Payload* output, double* loss) override {
    if (order.lane() == SubStepLane::kCommunication && *latency_us_ > 0) {
      std::this_thread::sleep_for(std::chrono::duration<double, std::micro>(*latency_us_));
    }
    return inner().RunSubStep(order, input, output, loss);
  }

 private:
  const double* latency_us_;
};

using RunResult = runtime::trace::AllToAllOverlap;

absl::StatusOr<RunResult> Run(const runtime::PlannerDefinition& planner,
                              const models::GptConfig& model, const runtime::WindowSampler& data,
                              int P, int M, int steps, const double* latency_us,
                              const std::string& trace_path) {
  ASSIGN_OR_RETURN(runtime::StepSpec spec, planner.MakeSpec({P, M, 0}));
  models::ChunkOptions chunk_options{kB, kT, M};
  ASSIGN_OR_RETURN(std::vector<std::unique_ptr<runtime::Chunk>> chunks,
                   runtime::BuildChunks(model, spec.num_chunks, chunk_options, ""));
  std::vector<std::unique_ptr<runtime::StageWork>> works;
  for (int s = 0; s < P; ++s) {
    std::map<int, runtime::Chunk*> held;
    for (int c = 0; c < spec.num_chunks; ++c) {
      if (spec.chunk_to_stage[c] == s) held[c] = chunks[c].get();
    }
    works.push_back(std::make_unique<TimedWork>(
        std::make_unique<runtime::ModelStageWork>(held, spec.num_chunks, &data, M,
                                                  runtime::OptimizerConfig{}),
        latency_us));
  }
  runtime::trace::TraceRecorder recorder(planner.name());
  PipelineOptions options;
  options.planner = &planner;
  options.spec = spec;
  options.trace = &recorder;
  ASSIGN_OR_RETURN(std::unique_ptr<Pipeline> pipeline, Pipeline::Create(options, std::move(works)));
  for (int step = 1; step <= steps + 1; ++step) {
    ASSIGN_OR_RETURN(StepOutcome outcome, pipeline->RunStep(step));
    (void)outcome;
  }
  const runtime::trace::Trace trace = runtime::trace::WithoutFirstSteps(recorder.Collect(), 1);
  if (!trace_path.empty()) RETURN_IF_ERROR(runtime::trace::WriteChromeJsonFile(trace, trace_path));
  return runtime::trace::MeasureAllToAllOverlap(trace);
}

struct Flags {
  int microbatches = 8;
  int steps = 5;
  std::string trace_dir;
};

bool ParseFlags(int argc, char** argv, Flags* flags) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    bool ok = true;
    if (absl::StartsWith(arg, "--microbatches=")) {
      ok = absl::SimpleAtoi(arg.substr(15), &flags->microbatches) && flags->microbatches >= 4;
    } else if (absl::StartsWith(arg, "--steps=")) {
      ok = absl::SimpleAtoi(arg.substr(8), &flags->steps) && flags->steps >= 1;
    } else if (absl::StartsWith(arg, "--trace_dir=")) {
      flags->trace_dir = arg.substr(12);
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr, "bad flag %s (--microbatches=M >= 4, --steps=N >= 1, --trace_dir=DIR)\n",
                   arg.c_str());
      return false;
    }
  }
  return true;
}

int Main(int argc, char** argv) {
  Flags flags;
  if (!ParseFlags(argc, argv, &flags)) return 2;
  const int P = 2, M = flags.microbatches;
  models::GptConfig model = models::UniformGpt(4, 64, 4, 256, kT, 7);
  for (models::LayerSpec& layer : model.layers) {
    layer.mlp = models::MlpKind::kMoe;
    layer.ffn_hidden = 0;
    layer.moe = models::MoeSpec{8, 2, 256, 256, 0.0, 0.01, 0.0};
  }
  std::vector<int32_t> tokens(1 << 14);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>((i * 7919) % 256);
  const runtime::WindowSampler data(&tokens, kB, kT, 1);
  SubStepOneFOneB plain;
  SubStepDualPipeV plain_v;
  auto overlap = runtime::PlannerRegistry::Default().Get("1f1b_overlap");
  auto overlap_v = runtime::PlannerRegistry::Default().Get("dualpipe_v");
  if (!overlap.ok() || !overlap_v.ok()) return 1;
  // One F experts sub-step's compute per all-to-all: the least of three probes' medians (a
  // loaded host only ever slows compute down).
  double latency_us = 0, probed_us = 0;
  for (int probe = 0; probe < 3; ++probe) {
    absl::StatusOr<RunResult> r = Run(plain, model, data, P, M, 2, &latency_us, "");
    if (!r.ok()) {
      std::fprintf(stderr, "%s\n", std::string(r.status().message()).c_str());
      return 1;
    }
    probed_us = probe == 0 ? r->experts_us : std::min(probed_us, r->experts_us);
  }
  latency_us = probed_us;
  std::printf(
      "MoE all-to-all overlap: 4 MoE layers (8 experts top-2, a shared expert), d_model 64, "
      "P=%d, M=%d, B=%d, T=%d; injected latency %.0f us per dispatch / combine (one F experts "
      "sub-step: the least median of three probe runs; each run's own median in the last column); "
      "median of %d steps after a warm-up step; A2A from the trace summary (per "
      "step, summed over stages)\n",
      P, M, kB, kT, latency_us, flags.steps);
  std::printf("%s\n", runtime::DescribeHostParallelism(P).c_str());
  std::printf("  %-24s %10s %14s %10s %12s\n", "planner", "step ms", "A2A ms/step", "hidden",
              "experts us");
  struct Entry {
    const char* name;
    const runtime::PlannerDefinition* def;
  };
  const Entry entries[] = {{"1f1b (sub-steps)", &plain},
                           {"1f1b_overlap", *overlap},
                           {"dualpipe_v (no overlap)", &plain_v},
                           {"dualpipe_v", *overlap_v}};
  double step_ms[4] = {0, 0, 0, 0};
  std::string tables;
  for (int k = 0; k < 4; ++k) {
    const std::string path = flags.trace_dir.empty()
                                 ? ""
                                 : flags.trace_dir + "/" +
                                       (k % 2 == 0 ? std::string("plain_") : std::string()) +
                                       entries[k].def->name() + ".json";
    absl::StatusOr<RunResult> r =
        Run(*entries[k].def, model, data, P, M, flags.steps, &latency_us, path);
    if (!r.ok()) {
      std::fprintf(stderr, "%s: %s\n", entries[k].name, std::string(r.status().message()).c_str());
      return 1;
    }
    step_ms[k] = r->step_ms;
    std::printf("  %-24s %10.1f %14.1f %9.0f%% %12.0f\n", entries[k].name, r->step_ms,
                r->a2a_ms_per_step, 100.0 * r->hidden_fraction, r->experts_us);
    tables += std::string("  ") + entries[k].name + ":\n" + r->table;
  }
  std::printf(
      "  step-time ratio 1f1b / 1f1b_overlap: %.2fx; dualpipe_v without / with overlap: "
      "%.2fx\n",
      step_ms[0] / step_ms[1], step_ms[2] / step_ms[3]);
  std::printf("per stage (trace summary):\n%s", tables.c_str());
  return 0;
}

}  // namespace
}  // namespace stagehand::actors

int main(int argc, char** argv) { return stagehand::actors::Main(argc, argv); }
