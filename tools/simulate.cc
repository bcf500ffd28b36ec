// tools/simulate: runs registered planners in virtual time under a cost model (a GPT config on
// a device preset, unit costs, or a real run's trace) and prints step time, bubble, exposed
// transfer, peak activation memory and MFU; --sweep finds the best planner per grid cell.
// Not a trainer: no model runs; the planners and the stage loop are the real ones.
//
//   simulate --planner=zb_v --stages=8 --microbatches=32 --model=gpt2 --device=h200
//   simulate --planner=auto ...        every planner, ranked; the best one's report
//   simulate --sweep --sweep_stages=4,8 --sweep_microbatches=8,32 --sweep_memory_gb=0,40
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "runtime/io/user_path.h"
#include "runtime/planner.h"
#include "runtime/sim/cost_model.h"
#include "runtime/sim/simulate_run.h"
#include "runtime/trace/chrome_json.h"
#include "runtime/trace/from_simulation.h"
#include "runtime/trace/summary.h"
#include "runtime/util/status_macros.h"
#include "tools/planner_list.h"

ABSL_FLAG(std::string, planner, "1f1b", "planner by name (--list_planners), or auto: rank all");
ABSL_FLAG(bool, list_planners, false, "print the registered planners and exit");
ABSL_FLAG(int, stages, 4, "pipeline stages P");
ABSL_FLAG(int, microbatches, 8, "microbatches per step M");
ABSL_FLAG(int, chunks_per_stage, 0, "v for planners that take it; 0 = the planner's default");
ABSL_FLAG(int, max_inflight, 0, "activations a stage may hold (0 = the planner's own)");
ABSL_FLAG(double, memory_cap_gb, 0,
          "device memory cap in GB: sets max_inflight per planner from the model's memory "
          "(0 = none; overrides --max_inflight)");
ABSL_FLAG(std::string, model, "launch",
          "GPT preset: launch, gpt2, gpt2_medium, gpt2_large, "
          "gpt2_xl, gpt3_175b");
ABSL_FLAG(int, layers, 0, "override the preset's layer count (0 = keep)");
ABSL_FLAG(int, micro_batch_size, 0, "override the preset's sequences per microbatch (0 = keep)");
ABSL_FLAG(int, data_parallel, 1, "pipeline replicas all-reducing gradients each step");
ABSL_FLAG(int, experts, 0, "mixture of experts: experts per MLP (0 = dense)");
ABSL_FLAG(int, experts_per_token, 2, "mixture of experts: experts each token goes to");
ABSL_FLAG(int, expert_parallel, 1, "mixture of experts: ranks the experts are spread over");
ABSL_FLAG(std::string, device, "cpu", "device preset: h100, h200, h100_ib, h200_ib, cpu");
ABSL_FLAG(bool, unit_costs, false, "F = I = W = 1, B = 2, free transfers (the closed forms)");
ABSL_FLAG(std::string, profile, "", "take F/I/W/B and transfer times from this real run's trace");
ABSL_FLAG(int, cores, 0,
          "cores shared by the stages' compute (a CPU with fewer cores than stages; with "
          "--profile, the traced run's cores too); 0 = a compute lane per stage");
ABSL_FLAG(int, steps, 1, "steps to simulate (jitter and stragglers differ per step)");
ABSL_FLAG(std::string, jitter, "none",
          "op-time jitter DIST:SPREAD, DIST in uniform, normal, lognormal (e.g. uniform:0.2)");
ABSL_FLAG(uint64_t, seed, 1, "jitter seed");
ABSL_FLAG(std::string, straggler, "",
          "S:FACTOR[@STEP]: stage S computes FACTOR times slower from step STEP (default 0)");
ABSL_FLAG(std::string, trace, "", "write the simulated steps as a Chrome trace (tools/trace)");
ABSL_FLAG(bool, sweep, false, "every planner over the grid below; best per cell");
ABSL_FLAG(std::string, sweep_stages, "4,8", "sweep: P values");
ABSL_FLAG(std::string, sweep_microbatches, "8,16,32", "sweep: M values");
ABSL_FLAG(std::string, sweep_chunks, "0", "sweep: chunks_per_stage values (0 = default)");
ABSL_FLAG(std::string, sweep_memory_gb, "0", "sweep: memory caps in GB (0 = none)");

namespace stagehand::tools {
namespace {

using runtime::sim::JitterDistribution;
using runtime::sim::StepCosts;
using runtime::sim::Variability;

// Cost models beyond this many actions run without a timeline (memory), unless --trace.
constexpr double kTimelineActionLimit = 4e6;

absl::StatusOr<std::vector<int>> ParseInts(const std::string& flag, const std::string& text,
                                           int minimum) {
  std::vector<int> values;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int value = 0;
    if (!absl::SimpleAtoi(part, &value) || value < minimum) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, "=", text, ": '", part, "' is not an integer >= ", minimum));
    }
    values.push_back(value);
  }
  if (values.empty()) return absl::InvalidArgumentError(absl::StrCat("--", flag, " is empty"));
  return values;
}

absl::StatusOr<Variability> ParseVariability(int num_stages) {
  Variability v;
  v.seed = absl::GetFlag(FLAGS_seed);
  const std::string jitter = absl::GetFlag(FLAGS_jitter);
  if (jitter != "none") {
    std::vector<std::string> parts = absl::StrSplit(jitter, ':');
    if (parts.size() != 2 || !runtime::sim::ParseJitterDistribution(parts[0], &v.jitter) ||
        !absl::SimpleAtod(parts[1], &v.spread)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--jitter=", jitter, ": want none or DIST:SPREAD, DIST in uniform, normal, lognormal"));
    }
  }
  const std::string straggler = absl::GetFlag(FLAGS_straggler);
  if (!straggler.empty()) {
    std::vector<std::string> at = absl::StrSplit(straggler, '@');
    std::vector<std::string> parts = absl::StrSplit(at[0], ':');
    if (at.size() > 2 || parts.size() != 2 || !absl::SimpleAtoi(parts[0], &v.straggler_stage) ||
        !absl::SimpleAtod(parts[1], &v.straggler_factor) ||
        (at.size() == 2 && !absl::SimpleAtoi(at[1], &v.straggler_from_step))) {
      return absl::InvalidArgumentError(
          absl::StrCat("--straggler=", straggler, ": want S:FACTOR or S:FACTOR@STEP"));
    }
  }
  RETURN_IF_ERROR(runtime::sim::ValidateVariability(v, num_stages));
  return v;
}

// The costs of a spec under the flags: unit costs, a profile, or the GPT model on a device.
struct CostSource {
  bool unit = false;
  runtime::sim::Workload workload;
  runtime::sim::DeviceSpec device;
  std::optional<runtime::trace::Trace> profile;
  runtime::sim::ProfileOptions profile_options;

  absl::StatusOr<StepCosts> operator()(const runtime::StepSpec& spec) const {
    if (unit) {
      StepCosts costs;
      costs.chunks.resize(spec.num_chunks);
      for (auto& chunk : costs.chunks) {
        chunk.forward = chunk.backward_input = chunk.backward_weight = 1;
        chunk.activation_bytes = 1;
      }
      costs.stage_static_bytes.assign(spec.num_stages, 0);
      return costs;
    }
    ASSIGN_OR_RETURN(StepCosts costs, runtime::sim::EstimateStepCosts(workload, device, spec));
    if (profile) return runtime::sim::StepCostsFromTrace(*profile, spec, costs, profile_options);
    return costs;
  }
};

absl::StatusOr<CostSource> ParseCostSource() {
  CostSource source;
  source.unit = absl::GetFlag(FLAGS_unit_costs);
  ASSIGN_OR_RETURN(source.workload, runtime::sim::WorkloadPreset(absl::GetFlag(FLAGS_model)));
  if (const int layers = absl::GetFlag(FLAGS_layers); layers > 0) {
    source.workload.model.layers.assign(layers, models::LayerSpec());
  } else if (layers < 0) {
    return absl::InvalidArgumentError(absl::StrCat("--layers=", layers, ", must be >= 0"));
  }
  if (const int b = absl::GetFlag(FLAGS_micro_batch_size); b > 0) {
    source.workload.microbatch_size = b;
  } else if (b < 0) {
    return absl::InvalidArgumentError(absl::StrCat("--micro_batch_size=", b, ", must be >= 0"));
  }
  source.workload.data_parallel = absl::GetFlag(FLAGS_data_parallel);
  source.workload.num_experts = absl::GetFlag(FLAGS_experts);
  source.workload.experts_per_token = absl::GetFlag(FLAGS_experts_per_token);
  source.workload.expert_parallel = absl::GetFlag(FLAGS_expert_parallel);
  ASSIGN_OR_RETURN(source.device, runtime::sim::DevicePreset(absl::GetFlag(FLAGS_device)));
  source.profile_options.cores = absl::GetFlag(FLAGS_cores);
  if (source.profile_options.cores < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--cores=", source.profile_options.cores, ", must be >= 0"));
  }
  if (const std::string path = absl::GetFlag(FLAGS_profile); !path.empty()) {
    if (source.unit) return absl::InvalidArgumentError("--profile and --unit_costs conflict");
    absl::StatusOr<runtime::trace::Trace> trace =
        runtime::trace::ReadChromeJsonFile(runtime::ResolveUserPath(path));
    if (!trace.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--profile=", path, ": ", trace.status().message()));
    }
    source.profile = *std::move(trace);
  }
  return source;
}

// Every kept step of `report` in one trace, steps one after the other.
runtime::trace::Trace StepsTrace(const runtime::sim::RunReport& report) {
  runtime::trace::Trace all;
  double offset_us = 0;
  for (std::size_t k = 0; k < report.steps.size(); ++k) {
    runtime::trace::SimulationTraceOptions options;
    options.step = static_cast<int64_t>(k) + 1;
    options.us_per_unit = report.unit_time ? 1000 : 1e6;
    runtime::trace::Trace one = TraceFromSimulation(report.steps[k], report.spec, options);
    for (auto& span : one.spans) span.begin_us += offset_us, span.end_us += offset_us;
    for (auto& sample : one.memory) sample.time_us += offset_us;
    for (auto& step : one.steps) step.begin_us += offset_us, step.end_us += offset_us;
    if (k == 0) {
      all = one;
      all.spans.clear(), all.memory.clear(), all.steps.clear();
      all.virtual_time = report.unit_time;
    }
    all.spans.insert(all.spans.end(), one.spans.begin(), one.spans.end());
    all.memory.insert(all.memory.end(), one.memory.begin(), one.memory.end());
    all.steps.insert(all.steps.end(), one.steps.begin(), one.steps.end());
    offset_us = all.steps.back().end_us;
  }
  return all;
}

runtime::sim::PlanRequest RequestFromFlags() {
  runtime::sim::PlanRequest request;
  request.options = {absl::GetFlag(FLAGS_stages), absl::GetFlag(FLAGS_microbatches),
                     absl::GetFlag(FLAGS_max_inflight), absl::GetFlag(FLAGS_chunks_per_stage)};
  request.memory_cap_bytes = absl::GetFlag(FLAGS_memory_cap_gb) * 1e9;
  return request;
}

// --planner=auto: rank every planner, then report the best one.
absl::StatusOr<std::string> PickAuto(const runtime::sim::PlanRequest& request,
                                     const CostSource& source, const Variability& variability,
                                     const runtime::sim::RunOptions& options) {
  runtime::sim::RunOptions quick = options;
  quick.record_timeline = false;
  quick.keep_every_step = false;
  const auto& registry = runtime::PlannerRegistry::Default();
  std::vector<runtime::sim::PlannerScore> scores =
      ScorePlanners(registry, registry.Names(), request, source, variability, quick);
  std::printf("auto: every planner simulated (%d step(s) each), best first\n", options.steps);
  for (const auto& score : scores) {
    if (score.status.ok()) {
      std::printf("  %-22s %s\n", score.planner.c_str(),
                  runtime::sim::FormatDuration(score.mean_step_time, source.unit).c_str());
    } else {
      std::printf("  %-22s cannot run: %s\n", score.planner.c_str(),
                  std::string(score.status.message()).c_str());
    }
  }
  if (scores.empty() || !scores.front().status.ok()) {
    return absl::FailedPreconditionError("auto: no planner can run this request");
  }
  return scores.front().planner;
}

// With MoE sub-steps (a planner that overlaps them, --experts): the last step's all-to-all
// and the share of it hidden under compute, as tools/trace summary reports a real run's.
absl::Status PrintAllToAll(const runtime::sim::RunReport& report) {
  if (report.last.sub_steps.empty()) return absl::OkStatus();
  runtime::trace::SimulationTraceOptions trace_options;
  trace_options.us_per_unit = report.unit_time ? 1000 : 1e6;
  runtime::trace::Trace trace = TraceFromSimulation(report.last, report.spec, trace_options);
  trace.virtual_time = report.unit_time;
  runtime::trace::SummaryOptions summary_options;
  summary_options.warmup_steps = 0;
  ASSIGN_OR_RETURN(runtime::trace::TraceSummary summary,
                   runtime::trace::Summarize(trace, summary_options));
  const std::string lines = runtime::trace::FormatAllToAll(summary);  // "" without a2a time
  if (!lines.empty()) std::printf("last step, MoE sub-steps: %s", lines.c_str());
  return absl::OkStatus();
}

absl::Status RunOne(const CostSource& source) {
  runtime::sim::PlanRequest request = RequestFromFlags();
  ASSIGN_OR_RETURN(Variability variability, ParseVariability(request.options.num_stages));
  runtime::sim::RunOptions options;
  options.steps = absl::GetFlag(FLAGS_steps);
  options.compute_lanes = absl::GetFlag(FLAGS_cores);
  const std::string trace_path = absl::GetFlag(FLAGS_trace);
  options.keep_every_step = !trace_path.empty();
  std::string name = absl::GetFlag(FLAGS_planner);
  if (name == "auto") {
    ASSIGN_OR_RETURN(name, PickAuto(request, source, variability, options));
    std::printf("auto picked %s\n\n", name.c_str());
  }
  ASSIGN_OR_RETURN(const runtime::PlannerDefinition* definition,
                   runtime::PlannerRegistry::Default().Get(name));
  ASSIGN_OR_RETURN(runtime::StepSpec spec, SpecForRequest(*definition, request, source));
  ASSIGN_OR_RETURN(StepCosts costs, source(spec));
  const double actions =
      static_cast<double>(spec.num_chunks) * spec.num_microbatches * (spec.split_backward ? 3 : 2);
  options.record_timeline = !trace_path.empty() || actions <= kTimelineActionLimit;
  runtime::sim::ModelCosts model(std::move(costs), variability);
  const auto begin = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(runtime::sim::RunReport report,
                   SimulateSteps(*definition, spec, model, options));
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  std::fputs(FormatRunReport(report).c_str(), stdout);
  RETURN_IF_ERROR(PrintAllToAll(report));
  std::printf("simulated %lld actions in %.3f s (%.2f M actions/s)\n",
              static_cast<long long>(report.num_actions), wall, report.num_actions / wall / 1e6);
  if (!trace_path.empty()) {
    const std::string path = runtime::ResolveUserPath(trace_path);
    RETURN_IF_ERROR(runtime::trace::WriteChromeJsonFile(StepsTrace(report), path));
    std::printf("wrote %s (tools/trace summary %s)\n", path.c_str(), path.c_str());
  }
  return absl::OkStatus();
}

absl::Status RunSweep(const CostSource& source) {
  ASSIGN_OR_RETURN(std::vector<int> stages,
                   ParseInts("sweep_stages", absl::GetFlag(FLAGS_sweep_stages), 1));
  ASSIGN_OR_RETURN(std::vector<int> microbatches,
                   ParseInts("sweep_microbatches", absl::GetFlag(FLAGS_sweep_microbatches), 1));
  ASSIGN_OR_RETURN(std::vector<int> chunks,
                   ParseInts("sweep_chunks", absl::GetFlag(FLAGS_sweep_chunks), 0));
  ASSIGN_OR_RETURN(std::vector<int> memory_gb,
                   ParseInts("sweep_memory_gb", absl::GetFlag(FLAGS_sweep_memory_gb), 0));
  runtime::sim::RunOptions options;
  options.steps = absl::GetFlag(FLAGS_steps);
  options.compute_lanes = absl::GetFlag(FLAGS_cores);
  options.record_timeline = false;
  const auto& registry = runtime::PlannerRegistry::Default();
  std::printf("%4s %5s %3s %7s  %-14s %-12s %-14s %-12s\n", "P", "M", "v", "cap GB", "best",
              "step time", "runner-up", "step time");
  for (int p : stages) {
    ASSIGN_OR_RETURN(Variability variability, ParseVariability(p));
    for (int m : microbatches) {
      for (int v : chunks) {
        for (int gb : memory_gb) {
          runtime::sim::PlanRequest request;
          request.options = {p, m, 0, v};
          request.memory_cap_bytes = gb * 1e9;
          std::vector<runtime::sim::PlannerScore> scores =
              ScorePlanners(registry, registry.Names(), request, source, variability, options);
          const auto cell = [&](std::size_t i) -> std::pair<std::string, std::string> {
            if (i >= scores.size() || !scores[i].status.ok()) return {"-", "-"};
            return {scores[i].planner,
                    runtime::sim::FormatDuration(scores[i].mean_step_time, source.unit)};
          };
          const auto [best, best_time] = cell(0);
          const auto [second, second_time] = cell(1);
          std::printf("%4d %5d %3d %7d  %-14s %-12s %-14s %-12s\n", p, m, v, gb, best.c_str(),
                      best_time.c_str(), second.c_str(), second_time.c_str());
        }
      }
    }
  }
  return absl::OkStatus();
}

absl::Status Main() {
  if (absl::GetFlag(FLAGS_list_planners)) {
    std::fputs(PlannerListText(runtime::PlannerRegistry::Default()).c_str(), stdout);
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(CostSource source, ParseCostSource());
  if (absl::GetFlag(FLAGS_sweep)) return RunSweep(source);
  return RunOne(source);
}

}  // namespace
}  // namespace stagehand::tools

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "simulate planners in virtual time: simulate --planner=NAME --stages=P --microbatches=M "
      "[--model=gpt2 --device=h200 | --unit_costs | --profile=TRACE]");
  absl::ParseCommandLine(argc, argv);
  if (absl::Status status = stagehand::tools::Main(); !status.ok()) {
    std::fprintf(stderr, "simulate: error: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
