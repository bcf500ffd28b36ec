// Picking and re-picking a planner by simulation, for tools/launch --planner=auto.
// Not the launcher: it owns no pipeline and runs no step.
#include "runtime/sim/auto_planner.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime::sim {
namespace {

// The profile window: the last `steps` steps of `trace` after `from` (the warm-up left out).
trace::Trace RecentSteps(const trace::Trace& trace, int64_t from, int64_t last, int steps) {
  trace::Trace recent = trace;
  const int64_t first = std::max(from, last - steps + 1);
  const auto outside = [&](int64_t step) { return step < first || step > last; };
  recent.spans.erase(std::remove_if(recent.spans.begin(), recent.spans.end(),
                                    [&](const trace::Span& s) { return outside(s.step); }),
                     recent.spans.end());
  recent.steps.erase(std::remove_if(recent.steps.begin(), recent.steps.end(),
                                    [&](const trace::StepSpan& s) { return outside(s.step); }),
                     recent.steps.end());
  recent.memory.clear();
  return recent;
}

constexpr int kProfileSteps = 3;

}  // namespace

CostsForSpec CpuCostsForRun(const Workload& workload, int slow_stage, double slow_factor) {
  return [=](const StepSpec& spec) -> absl::StatusOr<StepCosts> {
    ASSIGN_OR_RETURN(const DeviceSpec device, DevicePreset("cpu"));
    ASSIGN_OR_RETURN(StepCosts costs, EstimateStepCosts(workload, device, spec));
    if (slow_stage >= 0 && slow_stage < spec.num_stages) {
      costs.stage_factor.assign(spec.num_stages, 1.0);
      costs.stage_factor[slow_stage] = slow_factor;
    }
    return costs;
  };
}

absl::StatusOr<AutoPick> PickBySimulation(const PlannerRegistry& registry,
                                          const std::vector<std::string>& names,
                                          const PlanRequest& request, const CostsForSpec& costs,
                                          const std::string& source, int compute_lanes) {
  RunOptions options;
  options.steps = 1;
  options.record_timeline = false;
  options.compute_lanes = compute_lanes;
  const std::vector<PlannerScore> scores =
      ScorePlanners(registry, names, request, costs, Variability(), options);
  std::vector<std::string> ranking, failures;
  for (const PlannerScore& score : scores) {
    if (score.status.ok()) {
      ranking.push_back(
          absl::StrCat(score.planner, " ", FormatDuration(score.mean_step_time, false)));
    } else {
      failures.push_back(absl::StrCat(score.planner, ": ", score.status.message()));
    }
  }
  if (scores.empty() || !scores.front().status.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--planner=auto: no planner can run this request: ", absl::StrJoin(failures, "; ")));
  }
  AutoPick pick;
  pick.planner = scores.front().planner;
  pick.simulated_step_time = scores.front().mean_step_time;
  pick.scores = scores;
  pick.reason =
      absl::StrCat("simulated with ", source,
                   compute_lanes > 0 ? absl::StrCat(" on ", compute_lanes, " cores") : "", ": ",
                   absl::StrJoin(ranking, ", "),
                   failures.empty() ? "" : absl::StrCat(" (", failures.size(), " cannot run)"));
  return pick;
}

std::vector<std::string> SamePlacement(const PlannerRegistry& registry,
                                       const PlannerOptions& options, const StepSpec& spec) {
  std::vector<std::string> names;
  for (const std::string& name : registry.Names()) {
    absl::StatusOr<const PlannerDefinition*> definition = registry.Get(name);
    if (!definition.ok()) continue;
    absl::StatusOr<StepSpec> other = (*definition)->MakeSpec(options);
    if (other.ok() && other->num_chunks == spec.num_chunks &&
        other->chunk_to_stage == spec.chunk_to_stage) {
      names.push_back(name);
    }
  }
  return names;
}

double CostDrift(const StepCosts& before, const StepCosts& after) {
  double drift = 0;
  const std::size_t chunks = std::min(before.chunks.size(), after.chunks.size());
  for (std::size_t c = 0; c < chunks; ++c) {
    const ChunkCost& a = before.chunks[c];
    const ChunkCost& b = after.chunks[c];
    for (const auto& [x, y] :
         {std::make_pair(a.forward, b.forward), std::make_pair(a.backward_input, b.backward_input),
          std::make_pair(a.backward_weight, b.backward_weight)}) {
      if (x > 0 && y > 0) drift = std::max(drift, std::abs(y / x - 1));
    }
  }
  return drift;
}

AutoReplanner::AutoReplanner(const PlannerRegistry& registry, PlanRequest request,
                             CostsForSpec estimate, std::string current, ReplanOptions options)
    : registry_(registry),
      request_(std::move(request)),
      estimate_(std::move(estimate)),
      current_(std::move(current)),
      options_(options) {}

absl::StatusOr<std::optional<AutoPick>> AutoReplanner::AfterStep(const trace::Trace& trace,
                                                                 int64_t step) {
  if (first_step_ < 0) first_step_ = step;
  if (options_.drift <= 0 || step < first_step_ + options_.warmup_steps) return std::nullopt;
  ASSIGN_OR_RETURN(const PlannerDefinition* current, registry_.Get(current_));
  ASSIGN_OR_RETURN(const StepSpec spec, SpecForRequest(*current, request_, estimate_));
  const trace::Trace recent =
      RecentSteps(trace, first_step_ + options_.warmup_steps, step, kProfileSteps);
  ProfileOptions profile_options;
  profile_options.warmup_steps = 0;  // left out above
  profile_options.cores = options_.compute_lanes;
  const CostsForSpec profile = [&](const StepSpec& s) -> absl::StatusOr<StepCosts> {
    ASSIGN_OR_RETURN(StepCosts estimate, estimate_(s));
    return StepCostsFromTrace(recent, s, estimate, profile_options);
  };
  ASSIGN_OR_RETURN(StepCosts measured, profile(spec));
  const double drift = profiled_ ? CostDrift(*profiled_, measured) : 0;
  if (profiled_ && drift <= options_.drift) return std::nullopt;
  profiled_ = measured;
  ASSIGN_OR_RETURN(
      AutoPick pick,
      PickBySimulation(
          registry_, SamePlacement(registry_, request_.options, spec), request_, profile,
          profiled_ && drift > 0 ? absl::StrCat("the run's trace of steps up to ", step,
                                                " (costs drifted ", std::lround(100 * drift), "%)")
                                 : absl::StrCat("the run's trace of steps up to ", step),
          options_.compute_lanes));
  if (pick.planner == current_) return std::nullopt;
  for (const PlannerScore& score : pick.scores) {
    if (score.planner == current_ && score.status.ok() &&
        score.mean_step_time <= (1 + options_.min_gain) * pick.simulated_step_time) {
      return std::nullopt;  // within the gain a switch must bring
    }
  }
  current_ = pick.planner;
  return pick;
}

}  // namespace stagehand::runtime::sim
