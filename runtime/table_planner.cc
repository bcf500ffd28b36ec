// The "csv" planner: a validated schedule table run through OrderedPlanner.
// Not a registered planner: it needs a table, so it is made from one, never looked up by name.
#include "runtime/table_planner.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/plan_validation.h"

namespace stagehand::runtime {
namespace {

class TablePlannerDefinition : public PlannerDefinition {
 public:
  TablePlannerDefinition(ScheduleTable table, std::string source, StepSpec spec)
      : table_(std::move(table)),
        source_(std::move(source)),
        spec_(std::move(spec)),
        orders_(OrdersFromTable(table_, spec_)) {}

  std::string name() const override { return "csv"; }
  std::string description() const override {
    return absl::StrCat("schedule table from ", source_, ": ", spec_.num_stages, " ranks, ",
                        spec_.num_microbatches, " microbatches, ", spec_.num_chunks, " chunks, ",
                        spec_.split_backward ? "split" : "fused", " backward");
  }

  absl::StatusOr<StepSpec> MakeSpec(const PlannerOptions& options) const override {
    if (absl::Status status = ValidatePlannerOptions(options); !status.ok()) return status;
    if (options.num_stages != spec_.num_stages) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the schedule from ", source_, " has ", spec_.num_stages,
          " ranks (rows), but num_stages = ", options.num_stages, "; run it with num_stages = ",
          spec_.num_stages, " or load a schedule made for ", options.num_stages));
    }
    if (options.num_microbatches != spec_.num_microbatches) {
      return absl::InvalidArgumentError(
          absl::StrCat("the schedule from ", source_, " runs ", spec_.num_microbatches,
                       " microbatches, but num_microbatches = ", options.num_microbatches,
                       "; run it with num_microbatches = ", spec_.num_microbatches));
    }
    StepSpec spec = spec_;
    spec.max_inflight = options.max_inflight;
    if (spec.max_inflight > 0) {
      if (absl::Status status = ValidatePlan(spec, table_); !status.ok()) {
        return absl::Status(status.code(), absl::StrCat(source_, ": ", status.message()));
      }
    }
    return spec;
  }

  std::unique_ptr<Planner> MakePlanner(const StepSpec& spec, int stage) const override {
    if (stage < 0 || stage >= static_cast<int>(orders_.size())) {
      return std::make_unique<OrderedPlanner>(std::vector<Action>());
    }
    return std::make_unique<OrderedPlanner>(orders_[stage]);
  }

 private:
  ScheduleTable table_;
  std::string source_;
  StepSpec spec_;  // max_inflight 0
  StageOrders orders_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<PlannerDefinition>> MakeTablePlanner(ScheduleTable table,
                                                                    std::string source) {
  absl::StatusOr<StepSpec> spec = SpecFromTable(table);
  if (!spec.ok()) {
    return absl::Status(spec.status().code(), absl::StrCat(source, ": ", spec.status().message(),
                                                           "\n", FormatGrid(table)));
  }
  if (absl::Status status = ValidatePlan(*spec, table); !status.ok()) {
    return absl::Status(status.code(), absl::StrCat(source, ": ", status.message()));
  }
  return std::unique_ptr<PlannerDefinition>(
      new TablePlannerDefinition(std::move(table), std::move(source), *std::move(spec)));
}

absl::StatusOr<std::unique_ptr<PlannerDefinition>> LoadSchedulePlanner(const std::string& path) {
  absl::StatusOr<ScheduleTable> table = LoadScheduleCsv(path);
  if (!table.ok()) return table.status();
  return MakeTablePlanner(*std::move(table), path);
}

}  // namespace stagehand::runtime
