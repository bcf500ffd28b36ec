// PlannerSpec: the StepSpec a planner's MakeSpec returns, built in one call from the user's
// PlannerOptions, a placement and a backward kind. Not a planner: what a planner adds (memory
// checks against max_inflight, its own limits) stays in its MakeSpec.
#ifndef STAGEHAND_RUNTIME_PLANNERS_PLANNER_SPEC_H_
#define STAGEHAND_RUNTIME_PLANNERS_PLANNER_SPEC_H_

#include <functional>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "runtime/planner.h"
#include "runtime/step_spec.h"

namespace stagehand::runtime {

enum class Backward {
  kFused,  // one B per (chunk, microbatch)
  kSplit,  // I and W as separate actions (zero-bubble planners)
};

// ValidatePlannerOptions(options), then the step with P = options.num_stages,
// M = options.num_microbatches, max_inflight = options.max_inflight and v chunks per stage
// placed by StandardPlacement (C = P * v).
absl::StatusOr<StepSpec> StandardSpec(const PlannerOptions& options, int chunks_per_stage,
                                      Backward backward);

// The same with two chunks per stage in a V (VPlacement, C = 2P).
absl::StatusOr<StepSpec> VSpec(const PlannerOptions& options, Backward backward);

// InvalidArgument: `planner` cannot plan `spec` within its max_inflight (`why`: the planner's
// reason). Names the smallest budget above it that plans (`plans(b)`: the plan with budget b
// completes), tried upward to `default_budget` (what max_inflight = 0 gives) when the step is
// small enough to plan every budget quickly; otherwise names the default.
absl::Status BudgetTooSmall(absl::string_view planner, const StepSpec& spec, int default_budget,
                            const std::function<bool(int)>& plans, absl::string_view why);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_PLANNERS_PLANNER_SPEC_H_
