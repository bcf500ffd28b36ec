// MakeTablePlanner: a schedule table (from a CSV file, e.g. one torchtitan dumped) as a
// planner, each rank walking its row with OrderedPlanner. Not a format: the table and its
// CSV live in schedule_table.h; its checks in plan_validation.h.
#ifndef STAGEHAND_RUNTIME_TABLE_PLANNER_H_
#define STAGEHAND_RUNTIME_TABLE_PLANNER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/planner.h"
#include "runtime/schedule_table.h"

namespace stagehand::runtime {

// A definition named "csv" that runs `table`. Its step comes from SpecFromTable; the
// table must pass ValidatePlan (without a memory cap) or this returns that error.
// MakeSpec(options) then answers InvalidArgument unless options.num_stages is the table's
// rank count and options.num_microbatches its microbatch count, and ResourceExhausted if
// the table holds more than options.max_inflight activations on a rank. `source` (a file
// name) appears in the description and in errors.
absl::StatusOr<std::unique_ptr<PlannerDefinition>> MakeTablePlanner(ScheduleTable table,
                                                                    std::string source = "table");

// LoadScheduleCsv(path), then MakeTablePlanner: what --schedule=FILE runs.
absl::StatusOr<std::unique_ptr<PlannerDefinition>> LoadSchedulePlanner(const std::string& path);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_TABLE_PLANNER_H_
