// ZB-V: the zero-bubble policy on the V placement with 1F1B's memory, frozen.
// Not DualPipeV: no forward is paired with a backward; see dualpipe_v.cc.
#include "runtime/planners/zb_v.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/planners/planner_spec.h"
#include "runtime/planners/zero_bubble_policy.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {

std::string ZbVDefinition::description() const {
  return "ZB-V: two chunks per stage in a V (s and 2P-1-s), I and W split, 2P chunk "
         "activations per stage (max_inflight if set); greedy B > F > W, frozen at unit cost";
}

int ZbVBudget(const StepSpec& spec) {
  return spec.max_inflight > 0 ? spec.max_inflight : 2 * spec.num_stages;
}

absl::StatusOr<StepSpec> ZbVDefinition::MakeSpec(const PlannerOptions& options) const {
  ASSIGN_OR_RETURN(StepSpec spec, VSpec(options, Backward::kSplit));
  if (absl::StatusOr<std::vector<std::vector<Action>>> orders =
          ZeroBubbleOrders(spec, ZbVBudget(spec));
      !orders.ok()) {
    return BudgetTooSmall(
        "zb_v", spec, 2 * spec.num_stages,
        [spec](int budget) mutable {
          spec.max_inflight = budget;
          return ZeroBubbleOrders(spec, budget).ok();
        },
        orders.status().message());
  }
  return spec;
}

std::unique_ptr<Planner> ZbVDefinition::MakePlanner(const StepSpec& spec, int stage) const {
  absl::StatusOr<std::vector<Action>> order = ZeroBubbleStageOrder(spec, ZbVBudget(spec), stage);
  if (!order.ok()) {
    return std::make_unique<ZeroBubblePolicy>(ZbVBudget(spec));  // MakeSpec reported it
  }
  return std::make_unique<OrderedPlanner>(*std::move(order));
}

std::vector<std::unique_ptr<Planner>> ZbVDefinition::MakePlanners(
    const StepSpec& spec, const PlannerClock& /*clock*/) const {
  return FrozenZeroBubblePlanners(spec, ZbVBudget(spec));
}

STAGEHAND_REGISTER_PLANNER(ZbVDefinition);

}  // namespace stagehand::runtime
