// 1F1B as an OrderedPlanner, its three phases as closed-form counts.
// Not interleaved (see a virtual-stage planner for that) and not split-backward.
#include "runtime/planners/one_f_one_b.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "runtime/planners/planner_spec.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {

std::string OneFOneBDefinition::description() const {
  return "1F1B: warm-up forwards, one forward / one fused backward, cool-down backwards; "
         "stage s holds at most min(P - s, M) activations";
}

absl::StatusOr<StepSpec> OneFOneBDefinition::MakeSpec(const PlannerOptions& options) const {
  ASSIGN_OR_RETURN(StepSpec spec, StandardSpec(options, 1, Backward::kFused));
  const int needed = std::min(options.num_stages, options.num_microbatches);
  if (options.max_inflight > 0 && options.max_inflight < needed) {
    return absl::InvalidArgumentError(
        absl::StrCat("1f1b holds min(num_stages, num_microbatches) = ", needed,
                     " activations on stage 0, above max_inflight = ", options.max_inflight));
  }
  return spec;
}

std::vector<Action> OneFOneBOrder(const StepSpec& spec, int stage, int extra_warmup) {
  // P = num_stages, M = num_microbatches, s = stage, which holds chunk s.
  const int num_stages = spec.num_stages;
  const int num_microbatches = spec.num_microbatches;
  const int chunk = stage;
  const auto forward = [&](int mb) { return Action{stage, ActionKind::kForward, chunk, mb}; };
  const auto backward = [&](int mb) { return Action{stage, ActionKind::kBackward, chunk, mb}; };
  const int warmup = std::min(num_stages - 1 - stage + extra_warmup, num_microbatches);  // w
  std::vector<Action> order;
  // 1. warm-up: w = min(P-1-s, M) forwards, F(0) .. F(w-1).
  for (int mb = 0; mb < warmup; ++mb) order.push_back(forward(mb));
  // 2. steady state: M - w pairs, F(w+i) then B(i) for i in [0, M-w).
  for (int i = 0; i < num_microbatches - warmup; ++i) {
    order.push_back(forward(warmup + i));
    order.push_back(backward(i));
  }
  // 3. cool-down: w backwards, B(M-w) .. B(M-1).
  for (int mb = num_microbatches - warmup; mb < num_microbatches; ++mb) {
    order.push_back(backward(mb));
  }
  return order;
}

std::unique_ptr<Planner> OneFOneBDefinition::MakePlanner(const StepSpec& spec, int stage) const {
  return std::make_unique<OrderedPlanner>(OneFOneBOrder(spec, stage));
}

STAGEHAND_REGISTER_PLANNER(OneFOneBDefinition);

std::string OneFOneBOverlapDefinition::description() const {
  return "1F1B whose steady-state F/B pairs overlap at sub-layer granularity: one "
         "microbatch's MoE dispatch/combine under another's compute";
}

std::unique_ptr<Planner> OneFOneBOverlapDefinition::MakePlanner(const StepSpec& spec,
                                                                int stage) const {
  return std::make_unique<OrderedPlanner>(OneFOneBOrder(spec, stage, /*extra_warmup=*/1),
                                          /*overlap_pairs=*/true);
}

absl::StatusOr<StepSpec> OneFOneBOverlapDefinition::MakeSpec(const PlannerOptions& options) const {
  ASSIGN_OR_RETURN(StepSpec spec, StandardSpec(options, 1, Backward::kFused));
  const int needed = std::min(options.num_stages + 1, options.num_microbatches);
  if (options.max_inflight > 0 && options.max_inflight < needed) {
    return absl::InvalidArgumentError(
        absl::StrCat("1f1b_overlap holds min(num_stages + 1, num_microbatches) = ", needed,
                     " activations on stage 0, above max_inflight = ", options.max_inflight));
  }
  return spec;
}

STAGEHAND_REGISTER_PLANNER(OneFOneBOverlapDefinition);

}  // namespace stagehand::runtime
