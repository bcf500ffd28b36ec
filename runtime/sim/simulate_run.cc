// Simulated runs, their report, and planner scoring for sweeps and auto.
// Not the simulator: SimulateWithCosts runs each step.
#include "runtime/sim/simulate_run.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime::sim {
namespace {

using Interval = std::pair<double, double>;

// Sorted, disjoint union of `intervals`.
std::vector<Interval> Union(std::vector<Interval> intervals) {
  std::sort(intervals.begin(), intervals.end());
  std::vector<Interval> merged;
  for (const Interval& i : intervals) {
    if (i.second <= i.first) continue;
    if (!merged.empty() && i.first <= merged.back().second) {
      merged.back().second = std::max(merged.back().second, i.second);
    } else {
      merged.push_back(i);
    }
  }
  return merged;
}

// Length of `a` not covered by `b` (both sorted and disjoint).
double Uncovered(const std::vector<Interval>& a, const std::vector<Interval>& b) {
  double total = 0;
  std::size_t j = 0;
  for (const Interval& i : a) {
    double covered = 0;
    while (j < b.size() && b[j].second <= i.first) ++j;
    for (std::size_t k = j; k < b.size() && b[k].first < i.second; ++k) {
      covered += std::min(i.second, b[k].second) - std::max(i.first, b[k].first);
    }
    total += (i.second - i.first) - covered;
  }
  return total;
}

// Activation bytes held per stage over the timeline: + at an F's end, - at a W's / B's end.
std::vector<double> PeakActivationBytes(const SimResult& result, const StepCosts& costs) {
  std::vector<double> peaks;
  for (const std::vector<TimedAction>& actions : result.per_stage) {
    std::vector<std::pair<double, double>> changes;  // (time, delta)
    for (const TimedAction& timed : actions) {
      const double bytes = costs.chunks[timed.action.chunk].activation_bytes;
      if (timed.action.kind == ActionKind::kForward) changes.push_back({timed.end, bytes});
      if (timed.action.kind == ActionKind::kBackwardWeight ||
          timed.action.kind == ActionKind::kBackward) {
        changes.push_back({timed.end, -bytes});
      }
    }
    std::sort(changes.begin(), changes.end());  // frees before allocations at a tie
    double held = 0, peak = 0;
    for (const auto& [time, delta] : changes) peak = std::max(peak, held += delta);
    peaks.push_back(peak);
  }
  return peaks;
}

std::string Bytes(double bytes) {
  if (bytes >= 1e9) return absl::StrFormat("%.2f GB", bytes / 1e9);
  if (bytes >= 1e6) return absl::StrFormat("%.2f MB", bytes / 1e6);
  return absl::StrFormat("%.1f kB", bytes / 1e3);
}

std::string FormatSeconds(double seconds, bool unit_time) {
  if (unit_time) return absl::StrFormat("%g units", seconds);
  if (seconds >= 1) return absl::StrFormat("%.3f s", seconds);
  if (seconds >= 1e-3) return absl::StrFormat("%.3f ms", seconds * 1e3);
  return absl::StrFormat("%.3f us", seconds * 1e6);
}

}  // namespace

std::vector<double> ExposedTransferPerStage(const SimResult& result, int num_stages) {
  std::vector<std::vector<Interval>> transfers(num_stages), compute(num_stages);
  for (const TimedTransfer& t : result.transfers) {
    transfers[t.transfer.from_stage].push_back({t.start, t.end});
    transfers[t.transfer.to_stage].push_back({t.start, t.end});
  }
  for (int s = 0; s < num_stages && s < static_cast<int>(result.per_stage.size()); ++s) {
    for (const TimedAction& timed : result.per_stage[s])
      compute[s].push_back({timed.start, timed.end});
  }
  std::vector<double> exposed;
  for (int s = 0; s < num_stages; ++s) {
    exposed.push_back(Uncovered(Union(transfers[s]), Union(compute[s])));
  }
  return exposed;
}

namespace {

SimulationOptions SimulationOptionsOf(const RunOptions& options, const StepCosts& costs) {
  SimulationOptions sim;
  sim.record_timeline = options.record_timeline;
  sim.compute_lanes = options.compute_lanes;
  sim.sub_steps = costs.sub_steps;
  sim.ordered_communication = costs.expert_parallel > 1;
  return sim;
}

}  // namespace

absl::StatusOr<RunReport> SimulateSteps(const PlannerDefinition& definition, const StepSpec& spec,
                                        ModelCosts& costs, const RunOptions& options) {
  if (options.steps < 1) {
    return absl::InvalidArgumentError(absl::StrCat("--steps = ", options.steps, ", must be >= 1"));
  }
  RunReport report;
  report.planner = definition.name();
  report.spec = spec;
  report.peak_inflight.assign(spec.num_stages, 0);
  report.peak_activation_bytes.assign(spec.num_stages, 0);
  report.stage_static_bytes = costs.costs().stage_static_bytes;
  const SimulationOptions sim_options = SimulationOptionsOf(options, costs.costs());
  for (int step = 0; step < options.steps; ++step) {
    costs.set_step(step);
    ASSIGN_OR_RETURN(SimResult result, SimulateWithCosts(definition, spec, costs, sim_options));
    const std::vector<double>& reduce = costs.costs().stage_reduce;
    const double reduce_time = reduce.empty() ? 0 : *std::max_element(reduce.begin(), reduce.end());
    report.step_times.push_back(result.step_time + costs.costs().step_overhead + reduce_time);
    report.bubble_fraction += result.bubble_fraction / options.steps;
    report.num_actions += result.num_actions;
    if (!result.stage_busy.empty()) {
      const auto busiest = std::max_element(result.stage_busy.begin(), result.stage_busy.end());
      report.busiest_stage = static_cast<int>(busiest - result.stage_busy.begin());
      report.busiest_stage_time += *busiest / options.steps;
    }
    const std::vector<double> bytes = options.record_timeline
                                          ? PeakActivationBytes(result, costs.costs())
                                          : std::vector<double>();
    for (int s = 0; s < spec.num_stages; ++s) {
      report.peak_inflight[s] = std::max(report.peak_inflight[s], result.peak_inflight[s]);
      double bound = 0;
      for (int c = 0; c < spec.num_chunks; ++c) {
        if (spec.chunk_to_stage[c] == s) {
          bound = std::max(bound, costs.costs().chunks[c].activation_bytes);
        }
      }
      const double peak = bytes.empty() ? bound * result.peak_inflight[s] : bytes[s];
      report.peak_activation_bytes[s] = std::max(report.peak_activation_bytes[s], peak);
    }
    if (options.keep_every_step) report.steps.push_back(result);
    report.last = std::move(result);
  }
  report.unit_time = costs.costs().peak_matmul_flops <= 0;
  report.step_overhead = costs.costs().step_overhead;
  for (double reduce : costs.costs().stage_reduce) {
    report.data_parallel_reduce = std::max(report.data_parallel_reduce, reduce);
  }
  std::vector<double> sorted = report.step_times;
  std::sort(sorted.begin(), sorted.end());
  report.median_step_time = sorted[sorted.size() / 2];
  for (double t : sorted) report.mean_step_time += t / sorted.size();
  if (options.record_timeline && report.last.step_time > 0) {
    double exposed = 0;
    for (double e : ExposedTransferPerStage(report.last, spec.num_stages)) exposed += e;
    report.exposed_transfer_fraction = exposed / (spec.num_stages * report.last.step_time);
  }
  double flops = 0;
  for (const ChunkCost& chunk : costs.costs().chunks) flops += chunk.flops * spec.num_microbatches;
  if (report.mean_step_time > 0 && costs.costs().peak_matmul_flops > 0) {
    report.mfu =
        flops / (spec.num_stages * costs.costs().peak_matmul_flops * report.mean_step_time);
  }
  return report;
}

std::string FormatDuration(double seconds, bool unit_time) {
  return FormatSeconds(seconds, unit_time);
}

std::string FormatRunReport(const RunReport& r) {
  std::string text = absl::StrFormat(
      "%s: %d stages, %d microbatches, %d chunks, %s backward, max_inflight %d, %d step(s)\n",
      r.planner, r.spec.num_stages, r.spec.num_microbatches, r.spec.num_chunks,
      r.spec.split_backward ? "split (I/W)" : "fused", r.spec.max_inflight,
      static_cast<int>(r.step_times.size()));
  absl::StrAppend(&text, "step time ", FormatSeconds(r.mean_step_time, r.unit_time),
                  " (mean; median ", FormatSeconds(r.median_step_time, r.unit_time), ")  bubble ",
                  absl::StrFormat("%.1f%%", 100 * r.bubble_fraction), "  exposed transfer ",
                  r.exposed_transfer_fraction < 0
                      ? std::string("n/a (no timeline)")
                      : absl::StrFormat("%.1f%%", 100 * r.exposed_transfer_fraction),
                  "  MFU ",
                  r.unit_time ? std::string("n/a") : absl::StrFormat("%.1f%%", 100 * r.mfu), "\n");
  absl::StrAppend(&text, "busiest stage s", r.busiest_stage, " computes ",
                  FormatSeconds(r.busiest_stage_time, r.unit_time),
                  " (mean): no order of these actions on this placement is faster\n");
  if (r.data_parallel_reduce > 0) {
    absl::StrAppend(&text, "data-parallel all-reduce ",
                    FormatSeconds(r.data_parallel_reduce, r.unit_time),
                    " per step (largest stage; added after the last W, not overlapped)\n");
  }
  if (r.step_overhead > 0) {
    absl::StrAppend(&text, "step overhead ", FormatSeconds(r.step_overhead, r.unit_time),
                    " per step (the profile's optimizer and hand-offs outside the pipeline)\n");
  }
  absl::StrAppend(&text, "stage  peak activations  activation memory  static memory\n");
  const int num_stages = r.spec.num_stages;
  for (int s = 0; s < num_stages; ++s) {
    if (num_stages > 16 && s >= 4 && s < num_stages - 4) {
      if (s == 4) absl::StrAppend(&text, "...    (", num_stages - 8, " stages elided)\n");
      continue;
    }
    absl::StrAppend(
        &text, absl::StrFormat("s%-5d %-17d %-18s %s\n", s, r.peak_inflight[s],
                               Bytes(r.peak_activation_bytes[s]), Bytes(r.stage_static_bytes[s])));
  }
  return text;
}

absl::StatusOr<StepSpec> SpecForRequest(const PlannerDefinition& definition,
                                        const PlanRequest& request,
                                        const CostsForSpec& make_costs) {
  ASSIGN_OR_RETURN(StepSpec spec, definition.MakeSpec(request.options));
  if (request.memory_cap_bytes <= 0) return spec;
  PlannerOptions capped = request.options;
  // Probe with an unlimited budget for the chunk shape, then cap it.
  capped.max_inflight = 0;
  ASSIGN_OR_RETURN(StepSpec shape, definition.MakeSpec(capped));
  ASSIGN_OR_RETURN(StepCosts costs, make_costs(shape));
  ASSIGN_OR_RETURN(capped.max_inflight,
                   MaxInflightForMemory(costs, shape, request.memory_cap_bytes));
  return definition.MakeSpec(capped);
}

std::vector<PlannerScore> ScorePlanners(const PlannerRegistry& registry,
                                        const std::vector<std::string>& names,
                                        const PlanRequest& request, const CostsForSpec& make_costs,
                                        const Variability& variability, const RunOptions& options) {
  std::vector<PlannerScore> scores;
  for (const std::string& name : names) {
    PlannerScore score;
    score.planner = name;
    absl::StatusOr<RunReport> report = [&]() -> absl::StatusOr<RunReport> {
      ASSIGN_OR_RETURN(const PlannerDefinition* definition, registry.Get(name));
      ASSIGN_OR_RETURN(StepSpec spec, SpecForRequest(*definition, request, make_costs));
      ASSIGN_OR_RETURN(StepCosts costs, make_costs(spec));
      ModelCosts model(std::move(costs), variability);
      return SimulateSteps(*definition, spec, model, options);
    }();
    if (report.ok()) {
      score.mean_step_time = report->mean_step_time;
    } else {
      score.status = report.status();
    }
    scores.push_back(std::move(score));
  }
  std::stable_sort(scores.begin(), scores.end(), [](const PlannerScore& a, const PlannerScore& b) {
    if (a.status.ok() != b.status.ok()) return a.status.ok();
    return a.status.ok() && a.mean_step_time < b.mean_step_time;
  });
  return scores;
}

}  // namespace stagehand::runtime::sim
