// GPipe as an OrderedPlanner: all forwards, then all backwards.
// Not interleaved and not split-backward: one chunk per stage, fused B.
#include "runtime/planners/gpipe.h"

#include "absl/strings/str_cat.h"
#include "runtime/planners/planner_spec.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {

std::string GPipeDefinition::description() const {
  return "GPipe: all M forwards, then all M fused backwards; holds M activations per stage";
}

absl::StatusOr<StepSpec> GPipeDefinition::MakeSpec(const PlannerOptions& options) const {
  ASSIGN_OR_RETURN(StepSpec spec, StandardSpec(options, 1, Backward::kFused));
  if (options.max_inflight > 0 && options.max_inflight < options.num_microbatches) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gpipe holds the activations of all num_microbatches = ", options.num_microbatches,
        " microbatches on every stage, above max_inflight = ", options.max_inflight,
        "; use 1f1b, which holds at most num_stages"));
  }
  return spec;
}

std::vector<Action> GPipeOrder(const StepSpec& spec, int stage) {
  // M = num_microbatches; stage s holds chunk s.
  const int num_microbatches = spec.num_microbatches;
  const int chunk = stage;
  std::vector<Action> order;
  // 1. forwards: F(mb) for mb in [0, M).
  for (int mb = 0; mb < num_microbatches; ++mb) {
    order.push_back(Action{stage, ActionKind::kForward, chunk, mb});
  }
  // 2. backwards: B(mb) for mb in [0, M).
  for (int mb = 0; mb < num_microbatches; ++mb) {
    order.push_back(Action{stage, ActionKind::kBackward, chunk, mb});
  }
  return order;
}

std::unique_ptr<Planner> GPipeDefinition::MakePlanner(const StepSpec& spec, int stage) const {
  return std::make_unique<OrderedPlanner>(GPipeOrder(spec, stage));
}

STAGEHAND_REGISTER_PLANNER(GPipeDefinition);

}  // namespace stagehand::runtime
