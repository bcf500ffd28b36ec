// Dry run: plan extraction, validation and the bubble / memory report.
// Not a performance model: costs are the simulator's constant per-kind costs.
#include "runtime/dry_run.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/plan_validation.h"

namespace stagehand::runtime {
namespace {

absl::Status WithPrefix(const absl::Status& status, absl::string_view prefix) {
  return absl::Status(status.code(), absl::StrCat(prefix, status.message()));
}

}  // namespace

absl::StatusOr<StageOrders> PlannedOrders(const PlannerDefinition& definition,
                                          const StepSpec& spec) {
  absl::StatusOr<SimResult> result = SimulateSpec(definition, spec, CostModel());
  if (!result.ok()) return result.status();
  StageOrders orders(result->per_stage.size());
  for (std::size_t s = 0; s < result->per_stage.size(); ++s) {
    for (const TimedAction& timed : result->per_stage[s]) orders[s].push_back(timed.action);
  }
  return orders;
}

absl::StatusOr<ScheduleTable> ValidatePlanner(const PlannerDefinition& definition,
                                              const PlannerOptions& options) {
  const std::string prefix = absl::StrCat(definition.name(), ": ");
  absl::StatusOr<StepSpec> spec = definition.MakeSpec(options);
  if (!spec.ok()) return WithPrefix(spec.status(), prefix);
  absl::StatusOr<StageOrders> orders = PlannedOrders(definition, *spec);
  if (!orders.ok()) return orders.status();  // the simulator names the planner already
  ScheduleTable table = TableFromOrders(*spec, *orders);
  if (absl::Status status = ValidatePlan(*spec, table); !status.ok()) {
    return WithPrefix(status, prefix);
  }
  return table;
}

absl::StatusOr<DryRunReport> DryRun(const PlannerDefinition& definition,
                                    const PlannerOptions& options, const CostModel& cost) {
  absl::StatusOr<ScheduleTable> table = ValidatePlanner(definition, options);
  if (!table.ok()) return table.status();
  absl::StatusOr<StepSpec> spec = definition.MakeSpec(options);
  if (!spec.ok()) return spec.status();
  absl::StatusOr<SimResult> result = SimulateSpec(definition, *spec, cost);
  if (!result.ok()) return result.status();
  DryRunReport report;
  report.planner = definition.name();
  report.spec = *spec;
  report.cost = cost;
  report.step_time = result->step_time;
  report.model_step_time = result->step_time * report.spec.num_stages / report.spec.num_chunks;
  report.peak_inflight = result->peak_inflight;
  report.bubble_fraction = result->bubble_fraction;
  for (const std::vector<TimedAction>& stage : result->per_stage) {
    double busy = 0;
    for (const TimedAction& timed : stage) busy += timed.end - timed.start;
    report.stage_bubble_fraction.push_back(
        result->step_time > 0 ? (result->step_time - busy) / result->step_time : 0);
  }
  report.table = *std::move(table);
  return report;
}

std::string FormatDryRun(const DryRunReport& report) {
  const StepSpec& spec = report.spec;
  std::string text = absl::StrCat(
      "dry run: ", report.planner, ", ", spec.num_stages, " stages, ", spec.num_microbatches,
      " microbatches, ", spec.num_chunks, " chunks, ",
      spec.split_backward ? "split backward (I/W)" : "fused backward (B)", ", max_inflight ",
      spec.max_inflight == 0 ? std::string("unlimited") : std::to_string(spec.max_inflight), "\n");
  const CostModel& c = report.cost;
  absl::StrAppend(&text, "costs: F=", c.forward, " I=", c.backward_input, " W=", c.backward_weight,
                  " B=", c.backward, " transfer=", c.transfer,
                  "; optimizer synchronised at the end; step time ", report.step_time,
                  " chunk units = ", report.model_step_time,
                  " model units (1 = F of 1/P of the model, comparable across chunkings)\n");
  absl::StrAppend(&text, "stage  bubble  peak activations (microbatch-chunks)\n");
  for (std::size_t s = 0; s < report.stage_bubble_fraction.size(); ++s) {
    absl::StrAppend(&text,
                    absl::StrFormat("s%-4d %6.1f%%  %d\n", static_cast<int>(s),
                                    100 * report.stage_bubble_fraction[s],
                                    s < report.peak_inflight.size() ? report.peak_inflight[s] : 0));
  }
  absl::StrAppend(&text, absl::StrFormat("all   %6.1f%%\n", 100 * report.bubble_fraction));
  return text;
}

}  // namespace stagehand::runtime
