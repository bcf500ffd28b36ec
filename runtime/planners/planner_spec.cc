// PlannerSpec: option validation and the fields every planner's StepSpec shares.
// Not a placement policy: StandardPlacement and VPlacement live in runtime/step_spec.h.
#include "runtime/planners/planner_spec.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {
namespace {

absl::StatusOr<StepSpec> SpecWith(const PlannerOptions& options, std::vector<int> placement,
                                  Backward backward) {
  RETURN_IF_ERROR(ValidatePlannerOptions(options));
  StepSpec spec;
  spec.num_stages = options.num_stages;
  spec.num_microbatches = options.num_microbatches;
  spec.num_chunks = static_cast<int>(placement.size());
  spec.chunk_to_stage = std::move(placement);
  spec.split_backward = backward == Backward::kSplit;
  spec.max_inflight = options.max_inflight;
  return spec;
}

}  // namespace

absl::StatusOr<StepSpec> StandardSpec(const PlannerOptions& options, int chunks_per_stage,
                                      Backward backward) {
  return SpecWith(options, StandardPlacement(options.num_stages, chunks_per_stage), backward);
}

absl::StatusOr<StepSpec> VSpec(const PlannerOptions& options, Backward backward) {
  return SpecWith(options, VPlacement(options.num_stages), backward);
}

absl::Status BudgetTooSmall(absl::string_view planner, const StepSpec& spec, int default_budget,
                            const std::function<bool(int)>& plans, absl::string_view why) {
  // Each try plans one step: keep the search to a few million actions planned in all.
  constexpr double kMostActionsPlanned = 4e6;
  const double actions = 3.0 * spec.num_chunks * spec.num_microbatches;
  const int tries = default_budget - spec.max_inflight;
  std::string hint = absl::StrCat("0 = its default of ", default_budget);
  if (tries > 0 && actions * tries <= kMostActionsPlanned) {
    int smallest = 0;
    for (int b = spec.max_inflight + 1; b <= default_budget && smallest == 0; ++b) {
      if (plans(b)) smallest = b;
    }
    hint = smallest > 0
               ? absl::StrCat("the smallest that plans this step is ", smallest, "; ", hint)
               : absl::StrCat("none up to its default of ", default_budget, " plans");
  }
  return absl::InvalidArgumentError(absl::StrCat(
      planner, " cannot plan within max_inflight = ", spec.max_inflight, " (", hint, "): ", why));
}

}  // namespace stagehand::runtime
