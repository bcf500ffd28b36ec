// Dry run: a planner's plan as data (the unit-cost simulation laid out as a schedule
// table), checked by ValidatePlan, and the report `tools/launch --dry_run` prints (bubble
// and peak activations per stage). Not an executor: nothing here touches a model.
#ifndef STAGEHAND_RUNTIME_DRY_RUN_H_
#define STAGEHAND_RUNTIME_DRY_RUN_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/planner.h"
#include "runtime/schedule_table.h"
#include "runtime/simulator.h"
#include "runtime/step_spec.h"

namespace stagehand::runtime {

// The per-stage orders `definition` runs in the unit-cost simulation (CostModel()) of
// `spec`; the simulator's error if the planner stalls or breaks max_inflight.
absl::StatusOr<StageOrders> PlannedOrders(const PlannerDefinition& definition,
                                          const StepSpec& spec);

// The plan of `definition` for `options` as a table (TableFromOrders of PlannedOrders),
// checked by ValidatePlan: what --dump_schedule=FILE writes (SaveScheduleCsv) and what every
// run checks before it starts. Errors: MakeSpec's, the simulator's, ValidatePlan's, each
// prefixed with the planner's name.
absl::StatusOr<ScheduleTable> ValidatePlanner(const PlannerDefinition& definition,
                                              const PlannerOptions& options);

struct DryRunReport {
  std::string planner;  // the definition's name
  StepSpec spec;
  CostModel cost;
  double step_time = 0;  // optimizer synchronised at the end of the step
  // step_time in model units: a chunk's F costs 1 chunk unit but holds P/C of a stage's
  // share of the model, so model_step_time = step_time * P / C; comparable across chunkings
  // (zb_v's chunks are half a stage: its chunk units are half as long as 1f1b's).
  double model_step_time = 0;
  std::vector<double> stage_bubble_fraction;  // (P) idle time / step_time
  std::vector<int> peak_inflight;             // (P) activations held, in microbatch-chunks
  double bubble_fraction = 0;                 // idle stage-time / (P * step_time)
  ScheduleTable table;                        // the validated plan
};

// ValidatePlanner, then the simulation of the plan under `cost`.
absl::StatusOr<DryRunReport> DryRun(const PlannerDefinition& definition,
                                    const PlannerOptions& options,
                                    const CostModel& cost = CostModel());

// E.g.
//   dry run: zb_h1, 4 stages, 8 microbatches, 4 chunks, split backward (I/W), max_inflight 0
//   costs: F=1 I=1 W=1 B=2 transfer=0; ...; step time 27 chunk units = 27 model units (...)
//   stage  bubble  peak activations (microbatch-chunks)
//   s0      11.1%  4
//   ...
//   all     11.1%
std::string FormatDryRun(const DryRunReport& report);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_DRY_RUN_H_
