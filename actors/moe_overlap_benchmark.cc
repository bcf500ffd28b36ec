// Benchmark of fine-grained callables: one MoE model trained with 1F1B whose MoE actions run
// as sub-steps one action at a time ("1f1b", the baseline) and with 1f1b_overlap, both in
// one go, with a link latency injected into every dispatch and combine (about one experts
// sub-step's compute, measured first). Prints each run's all-to-all time per step, the share
// of it hidden under the same stage's compute (sub-steps of another microbatch), and the
// step-time ratio. Not a test, and not expert parallelism across processes: the all-to-all
// is the in-process dispatch / combine plus the injected latency.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "actors/pipeline.h"
#include "models/gpt_config.h"
#include "runtime/planners/one_f_one_b.h"
#include "runtime/train/stage_work.h"
#include "runtime/train/training.h"
#include "runtime/util/status_macros.h"

namespace stagehand::actors {
namespace {

using runtime::SubStepLane;
using runtime::SubStepOrder;

// The baseline: 1F1B's plan with MoE actions as sub-steps, one action at a time (no pair
// overlaps), so that it pays the same injected latency as 1f1b_overlap.
class SubStepOneFOneB : public runtime::OneFOneBDefinition {
 public:
  bool OverlapsSubSteps() const override { return true; }  // sub-steps; its planner: no pairs
};

constexpr int kB = 2, kT = 128;  // microbatch: sequences, tokens each

struct Interval {
  int64_t begin_ns = 0, end_ns = 0;
  bool communication = false;
  bool experts = false;  // an F's experts sub-step
};

// A ModelStageWork that sleeps `latency_us` in every dispatch and combine (the link) and
// records every sub-step's interval on its lane.
class TimedWork : public runtime::StageWork {
 public:
  TimedWork(std::unique_ptr<runtime::StageWork> inner, const double* latency_us)
      : inner_(std::move(inner)), latency_us_(latency_us) {}
  void BeginStep(int64_t step, int m) override { inner_->BeginStep(step, m); }
  absl::Status Forward(int c, int mb, const runtime::Payload* in, runtime::Payload* out,
                       double* loss) override {
    return inner_->Forward(c, mb, in, out, loss);
  }
  absl::Status BackwardInput(int c, int mb, const runtime::Payload* g,
                             runtime::Payload* out) override {
    return inner_->BackwardInput(c, mb, g, out);
  }
  absl::Status BackwardWeights(int c, int mb) override { return inner_->BackwardWeights(c, mb); }
  absl::Status Backward(int c, int mb, const runtime::Payload* g, runtime::Payload* out) override {
    return inner_->Backward(c, mb, g, out);
  }
  runtime::TiedGradientMap TiedGradients() override { return inner_->TiedGradients(); }
  void SetTiedGradients(const runtime::TiedGradientMap& s) override { inner_->SetTiedGradients(s); }
  std::map<int, std::vector<double>> SquaredNorms() override { return inner_->SquaredNorms(); }
  void ApplyOptimizer(double scale, int step) override { inner_->ApplyOptimizer(scale, step); }
  std::map<int, std::vector<std::string>> GradientNames() override {
    return inner_->GradientNames();
  }
  void DiscardGradients() override { inner_->DiscardGradients(); }
  double TakeDataSeconds() override { return inner_->TakeDataSeconds(); }
  runtime::SubStepLayout SubStepLayoutOf() const override { return inner_->SubStepLayoutOf(); }
  absl::Status RunSubStep(const SubStepOrder& order, const runtime::Payload* input,
                          runtime::Payload* output, double* loss) override {
    const bool communication = order.lane() == SubStepLane::kCommunication;
    const int64_t begin = runtime::trace::NowNanos();
    if (communication && *latency_us_ > 0) {
      std::this_thread::sleep_for(std::chrono::duration<double, std::micro>(*latency_us_));
    }
    const absl::Status status = inner_->RunSubStep(order, input, output, loss);
    const int64_t end = runtime::trace::NowNanos();
    std::lock_guard<std::mutex> lock(mu_);
    intervals_.push_back({begin, end, communication,
                          !order.whole && order.step.part == runtime::SubStepKind::kExperts});
    return status;
  }
  std::vector<Interval> Take() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<Interval> out;
    out.swap(intervals_);
    return out;
  }

 private:
  std::unique_ptr<runtime::StageWork> inner_;
  const double* latency_us_;
  std::mutex mu_;
  std::vector<Interval> intervals_;
};

// All-to-all time of one stage's intervals, and how much of it the stage's compute lane
// covered (the union of compute intervals).
void Hidden(const std::vector<Interval>& intervals, double* a2a_s, double* hidden_s) {
  std::vector<std::pair<int64_t, int64_t>> compute;
  for (const Interval& i : intervals) {
    if (!i.communication) compute.push_back({i.begin_ns, i.end_ns});
  }
  for (const Interval& c : intervals) {
    if (!c.communication) continue;
    *a2a_s += (c.end_ns - c.begin_ns) * 1e-9;
    for (const auto& [b, e] : compute) {  // compute intervals of one lane never overlap
      *hidden_s += std::max<int64_t>(0, std::min(e, c.end_ns) - std::max(b, c.begin_ns)) * 1e-9;
    }
  }
}

struct RunResult {
  double step_s = 0, a2a_s = 0, hidden_s = 0, experts_us = 0;
};

absl::StatusOr<RunResult> Run(const runtime::PlannerDefinition& planner,
                              const models::GptConfig& model, const runtime::WindowSampler& data,
                              int P, int M, int steps, const double* latency_us) {
  ASSIGN_OR_RETURN(runtime::StepSpec spec, planner.MakeSpec({P, M, 0}));
  models::ChunkOptions chunk_options{kB, kT, M};
  ASSIGN_OR_RETURN(std::vector<std::unique_ptr<runtime::Chunk>> chunks,
                   runtime::BuildChunks(model, spec.num_chunks, chunk_options, ""));
  std::vector<std::unique_ptr<runtime::StageWork>> works;
  std::vector<TimedWork*> timed;
  for (int s = 0; s < P; ++s) {
    std::map<int, runtime::Chunk*> held;
    for (int c = 0; c < spec.num_chunks; ++c) {
      if (spec.chunk_to_stage[c] == s) held[c] = chunks[c].get();
    }
    auto work = std::make_unique<TimedWork>(
        std::make_unique<runtime::ModelStageWork>(held, spec.num_chunks, &data, M,
                                                  runtime::OptimizerConfig{}),
        latency_us);
    timed.push_back(work.get());
    works.push_back(std::move(work));
  }
  PipelineOptions options;
  options.planner = &planner;
  options.spec = spec;
  ASSIGN_OR_RETURN(std::unique_ptr<Pipeline> pipeline, Pipeline::Create(options, std::move(works)));
  RunResult result;
  std::vector<double> step_s;
  int experts = 0;
  for (int step = 1; step <= steps + 1; ++step) {
    ASSIGN_OR_RETURN(StepOutcome outcome, pipeline->RunStep(step));
    for (TimedWork* w : timed) {
      const std::vector<Interval> intervals = w->Take();
      if (step == 1) continue;  // warm-up
      Hidden(intervals, &result.a2a_s, &result.hidden_s);
      for (const Interval& i : intervals) {
        if (!i.experts) continue;
        result.experts_us += (i.end_ns - i.begin_ns) * 1e-3;
        ++experts;
      }
    }
    if (step > 1) step_s.push_back(outcome.seconds);
  }
  std::sort(step_s.begin(), step_s.end());
  result.step_s = step_s[step_s.size() / 2];
  result.a2a_s /= steps;
  result.hidden_s /= steps;
  result.experts_us /= std::max(experts, 1);
  return result;
}

int Main() {
  const int P = 2, M = 8, kSteps = 5;
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
  auto overlap = runtime::PlannerRegistry::Default().Get("1f1b_overlap");
  if (!overlap.ok()) return 1;
  double latency_us = 0;
  absl::StatusOr<RunResult> probe = Run(plain, model, data, P, M, 2, &latency_us);
  if (!probe.ok()) {
    std::fprintf(stderr, "%s\n", std::string(probe.status().message()).c_str());
    return 1;
  }
  latency_us = probe->experts_us;  // one F experts sub-step's compute per all-to-all
  std::printf(
      "MoE all-to-all overlap: 4 MoE layers (8 experts top-2, a shared expert), d_model 64, "
      "P=%d, M=%d, B=%d, T=%d; injected latency %.0f us per dispatch / combine (one F experts "
      "sub-step)\n",
      P, M, kB, kT, latency_us);
  std::printf("  %-14s %10s %14s %10s\n", "planner", "step ms", "A2A ms/step", "hidden");
  double step_ms[2] = {0, 0};
  int k = 0;
  for (const runtime::PlannerDefinition* def :
       {static_cast<const runtime::PlannerDefinition*>(&plain), *overlap}) {
    absl::StatusOr<RunResult> r = Run(*def, model, data, P, M, kSteps, &latency_us);
    if (!r.ok()) {
      std::fprintf(stderr, "%s\n", std::string(r.status().message()).c_str());
      return 1;
    }
    step_ms[k++] = r->step_s * 1e3;
    std::printf("  %-14s %10.1f %14.1f %9.0f%%\n", k == 1 ? "1f1b" : "1f1b_overlap",
                r->step_s * 1e3, r->a2a_s * 1e3, 100.0 * r->hidden_s / r->a2a_s);
  }
  std::printf("  step-time ratio 1f1b / 1f1b_overlap: %.2fx\n", step_ms[0] / step_ms[1]);
  return 0;
}

}  // namespace
}  // namespace stagehand::actors

int main() { return stagehand::actors::Main(); }
