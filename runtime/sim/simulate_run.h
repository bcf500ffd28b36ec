// A simulated run: several steps of one planner under a cost model, and what tools/simulate
// prints about it (step time, bubble, exposed transfer, peak activation memory, MFU); the
// sweep over (P, M, v, memory cap) and the pick of the best planner. Not the simulator itself
// (runtime/simulator.h) and not a flag parser (tools/simulate.cc).
#ifndef STAGEHAND_RUNTIME_SIM_SIMULATE_RUN_H_
#define STAGEHAND_RUNTIME_SIM_SIMULATE_RUN_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/planner.h"
#include "runtime/sim/cost_model.h"
#include "runtime/simulator.h"
#include "runtime/step_spec.h"

namespace stagehand::runtime::sim {

struct RunOptions {
  int steps = 1;
  // Timelines cost memory (~70 bytes an action); off, exposed transfer and exact peak bytes
  // are not computed (the peak is then bounded by peak activations x largest chunk).
  bool record_timeline = true;
  bool keep_every_step = false;  // RunReport::steps holds every step, not only the last
  int compute_lanes = 0;         // SimulationOptions::compute_lanes (cores; 0 = per stage)
};

struct RunReport {
  std::string planner;
  StepSpec spec;
  std::vector<double> step_times;  // seconds, one per step (with the costs' step_overhead)
  double mean_step_time = 0;
  double median_step_time = 0;
  double bubble_fraction = 0;  // mean over steps: idle stage-time / (P * step time)
  double exposed_transfer_fraction =
      -1;                          // last step: exposed transfer / (P * step time); -1 unknown
  std::vector<int> peak_inflight;  // (P) over all steps
  std::vector<double> peak_activation_bytes;  // (P) over all steps
  std::vector<double> stage_static_bytes;     // (P)
  // Mean over steps of the busiest stage's compute time: no order of the same actions on the
  // same placement finishes a step sooner (the bound a planner can reach).
  double busiest_stage_time = 0;
  int busiest_stage = 0;            // in the last step
  double step_overhead = 0;         // added to each step (StepCosts::step_overhead)
  double data_parallel_reduce = 0;  // added to each step: the largest stage_reduce
  double mfu = 0;                   // model FLOPs per mean step / (P * peak rate * mean step time)
  int64_t num_actions = 0;          // compute actions simulated, all steps
  bool unit_time = false;           // unit costs: times are cost units, not seconds; no MFU
  SimResult last;                   // the last step (its timeline if recorded)
  std::vector<SimResult> steps;     // every step, with keep_every_step
};

// Runs `options.steps` steps of `definition` on `spec` (planners made afresh each step, as the
// actor runtime does), costs.set_step(k) before step k. The simulator's errors.
absl::StatusOr<RunReport> SimulateSteps(const PlannerDefinition& definition, const StepSpec& spec,
                                        ModelCosts& costs, const RunOptions& options);

// Exposed transfer time of each stage in `result` (its timeline): the union of the stage's
// outgoing and incoming transfers less the stage's own compute (summary.h's definition).
std::vector<double> ExposedTransferPerStage(const SimResult& result, int num_stages);

// E.g.
//   zb_v: 4 stages, 8 microbatches, 8 chunks, split backward, max_inflight 8, 3 steps
//   step time 1.234 ms (mean; median 1.230 ms)  bubble 8.1%  exposed transfer 0.4%  MFU 41.2%
//   stage  peak activations  activation memory  static memory
//   s0     8                 1.20 GB            2.10 GB
std::string FormatRunReport(const RunReport& report);

// "1.234 ms", "27 units" (unit_time).
std::string FormatDuration(double seconds, bool unit_time);

// What a planner is asked for in a sweep cell or by auto: options, and a memory cap that
// becomes max_inflight per planner (its chunk sizes differ).
struct PlanRequest {
  PlannerOptions options;
  double memory_cap_bytes = 0;  // 0: options.max_inflight as given
};

// The spec `definition` plans for `request`: MakeSpec, then max_inflight from the memory cap
// under the costs `make_costs` gives for that spec, then MakeSpec again. Their errors.
using CostsForSpec = std::function<absl::StatusOr<StepCosts>(const StepSpec&)>;
absl::StatusOr<StepSpec> SpecForRequest(const PlannerDefinition& definition,
                                        const PlanRequest& request, const CostsForSpec& make_costs);

struct PlannerScore {
  std::string planner;
  double mean_step_time = 0;  // seconds; meaningless when !status.ok()
  absl::Status status;        // why the planner could not run this request
};

// Every planner named in `names` simulated for `request` (same variability and seed each),
// sorted best (lowest mean step time) first, failures last.
std::vector<PlannerScore> ScorePlanners(const PlannerRegistry& registry,
                                        const std::vector<std::string>& names,
                                        const PlanRequest& request, const CostsForSpec& make_costs,
                                        const Variability& variability, const RunOptions& options);

}  // namespace stagehand::runtime::sim

#endif  // STAGEHAND_RUNTIME_SIM_SIMULATE_RUN_H_
