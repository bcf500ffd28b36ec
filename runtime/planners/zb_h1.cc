// ZB-H1 as an OrderedPlanner, its phases as closed-form counts.
// Not adaptive: the W's deferred per stage are fixed (s on stage s), not searched.
#include "runtime/planners/zb_h1.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "runtime/planners/planner_spec.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {

std::string ZbH1Definition::description() const {
  return "ZB-H1: 1F1B with I and W split, stage s deferring s W's into the cool-down; "
         "(P-1)(F+B-W) idle per stage, min(P, M) activations per stage";
}

absl::StatusOr<StepSpec> ZbH1Definition::MakeSpec(const PlannerOptions& options) const {
  ASSIGN_OR_RETURN(StepSpec spec, StandardSpec(options, 1, Backward::kSplit));
  const int needed = std::min(options.num_stages, options.num_microbatches);
  if (options.max_inflight > 0 && options.max_inflight < needed) {
    return absl::InvalidArgumentError(
        absl::StrCat("zb_h1 holds min(num_stages, num_microbatches) = ", needed,
                     " activations on every stage, above max_inflight = ", options.max_inflight));
  }
  return spec;
}

std::vector<Action> ZbH1Order(const StepSpec& spec, int stage) {
  // P = num_stages, M = num_microbatches, s = stage, which holds chunk s.
  const int num_stages = spec.num_stages;
  const int num_microbatches = spec.num_microbatches;
  const int chunk = stage;
  const auto make = [&](ActionKind kind, int mb) { return Action{stage, kind, chunk, mb}; };
  const int warmup = std::min(num_stages - stage, num_microbatches);  // w = min(P-s, M)
  int next_forward = 0, next_weight = 0;
  std::vector<Action> order;
  // 1. warm-up: w forwards, F(0) .. F(w-1); the stage then holds w activations.
  for (; next_forward < warmup; ++next_forward) {
    order.push_back(make(ActionKind::kForward, next_forward));
  }
  // 2. steady state and cool-down: for each microbatch k, B(k); then W(k - s) once s W's
  //    are deferred; then the next forward while any is left. The deferred W's run where
  //    1F1B's cool-down waits for gradients.
  for (int k = 0; k < num_microbatches; ++k) {
    order.push_back(make(ActionKind::kBackwardInput, k));
    if (k >= stage) order.push_back(make(ActionKind::kBackwardWeight, next_weight++));
    if (next_forward < num_microbatches)
      order.push_back(make(ActionKind::kForward, next_forward++));
  }
  // 3. tail: the min(s, M) W's still deferred.
  for (; next_weight < num_microbatches; ++next_weight) {
    order.push_back(make(ActionKind::kBackwardWeight, next_weight));
  }
  return order;
}

std::unique_ptr<Planner> ZbH1Definition::MakePlanner(const StepSpec& spec, int stage) const {
  return std::make_unique<OrderedPlanner>(ZbH1Order(spec, stage));
}

STAGEHAND_REGISTER_PLANNER(ZbH1Definition);

}  // namespace stagehand::runtime
