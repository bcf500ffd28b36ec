// --planner=auto for real runs: simulate every candidate planner under the current costs (the
// GPT model's estimate before the first step, then a profile of the run's own trace) and pick
// the fastest; re-plan when the measured costs drift from those of the last pick.
// Not the launcher's glue (tools/launch.cc swaps the pipeline) and not the simulator.
#ifndef STAGEHAND_RUNTIME_SIM_AUTO_PLANNER_H_
#define STAGEHAND_RUNTIME_SIM_AUTO_PLANNER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/planner.h"
#include "runtime/sim/cost_model.h"
#include "runtime/sim/simulate_run.h"
#include "runtime/trace/trace.h"

namespace stagehand::runtime::sim {

struct AutoPick {
  std::string planner;
  double simulated_step_time = 0;    // seconds
  std::string reason;                // one line: the ranking and what it was simulated with
  std::vector<PlannerScore> scores;  // every candidate, best first
};

// The GPT cost model of `workload` on this CPU (the cpu preset), with stage `slow_stage`
// (-1: none) `slow_factor` times slower, as launch --slow_stage makes it.
CostsForSpec CpuCostsForRun(const Workload& workload, int slow_stage, double slow_factor);

// Every planner in `names` simulated for `request` (`steps` steps, `compute_lanes` shared
// cores as in SimulationOptions), the fastest picked. `source` says where the costs came
// from ("the GPT model", "the run's trace"). FailedPrecondition listing why each failed if
// none can run.
absl::StatusOr<AutoPick> PickBySimulation(const PlannerRegistry& registry,
                                          const std::vector<std::string>& names,
                                          const PlanRequest& request, const CostsForSpec& costs,
                                          const std::string& source, int compute_lanes);

// The registered planners whose spec for `options` places chunks as `spec` does (same chunk
// count and stages): those a running pipeline can switch to on the same model chunks.
std::vector<std::string> SamePlacement(const PlannerRegistry& registry,
                                       const PlannerOptions& options, const StepSpec& spec);

// The largest relative change of a chunk's F, I or W duration from `before` to `after`
// (|after / before - 1|; durations 0 in either are skipped); 0 when nothing compares.
double CostDrift(const StepCosts& before, const StepCosts& after);

struct ReplanOptions {
  double drift = 0.2;     // re-plan when CostDrift exceeds this (0: never)
  int warmup_steps = 1;   // the first profile is taken after this many steps more
  int compute_lanes = 0;  // shared cores (see SimulationOptions)
  // Switch only to a planner that simulates this much faster than the current one (a
  // switch costs a pipeline rebuild, and near-ties flip with measurement noise).
  double min_gain = 0.03;
};

// Re-plans a running pipeline from its own trace. Thread-free: call AfterStep between steps.
class AutoReplanner {
 public:
  // `estimate` gives the GPT model's costs of a spec (memory, and where a profile lacks a
  // figure); `current` is the planner running now, picked for `request`.
  AutoReplanner(const PlannerRegistry& registry, PlanRequest request, CostsForSpec estimate,
                std::string current, ReplanOptions options);

  // After `step` finished, with the trace so far: the first profile after the warm-up, and
  // every later one whose costs drifted past the threshold from the last profile used, rank the
  // planners of the current placement; a pick other than the current one that simulates at
  // least min_gain faster is returned (its reason says why), nullopt otherwise. Errors of the
  // profile or the simulations.
  absl::StatusOr<std::optional<AutoPick>> AfterStep(const trace::Trace& trace, int64_t step);

  const std::string& current() const { return current_; }

 private:
  const PlannerRegistry& registry_;
  PlanRequest request_;
  CostsForSpec estimate_;
  std::string current_;
  ReplanOptions options_;
  std::optional<StepCosts> profiled_;  // the costs of the last profile ranked with
  int64_t first_step_ = -1;
};

}  // namespace stagehand::runtime::sim

#endif  // STAGEHAND_RUNTIME_SIM_AUTO_PLANNER_H_
