// ZB-H2: the zero-bubble policy on the standard placement with a 2P budget, frozen.
// Not hand-laid: the greedy policy finds the parallelogram; the tests pin its shape.
#include "runtime/planners/zb_h2.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/planners/planner_spec.h"
#include "runtime/planners/zero_bubble_policy.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {

std::string ZbH2Definition::description() const {
  return "ZB-H2: I and W split, up to 2P activations per stage (max_inflight if set) so that "
         "forwards fill the warm-up and W's the tail; greedy B > F > W, frozen at unit cost";
}

int ZbH2Budget(const StepSpec& spec) {
  return spec.max_inflight > 0 ? spec.max_inflight : 2 * spec.num_stages;
}

absl::StatusOr<StepSpec> ZbH2Definition::MakeSpec(const PlannerOptions& options) const {
  ASSIGN_OR_RETURN(StepSpec spec, StandardSpec(options, 1, Backward::kSplit));
  if (absl::StatusOr<std::vector<std::vector<Action>>> orders =
          ZeroBubbleOrders(spec, ZbH2Budget(spec));
      !orders.ok()) {
    return BudgetTooSmall(
        "zb_h2", spec, 2 * spec.num_stages,
        [spec](int budget) mutable {
          spec.max_inflight = budget;
          return ZeroBubbleOrders(spec, budget).ok();
        },
        orders.status().message());
  }
  return spec;
}

std::unique_ptr<Planner> ZbH2Definition::MakePlanner(const StepSpec& spec, int stage) const {
  absl::StatusOr<std::vector<Action>> order = ZeroBubbleStageOrder(spec, ZbH2Budget(spec), stage);
  if (!order.ok()) {
    return std::make_unique<ZeroBubblePolicy>(ZbH2Budget(spec));  // MakeSpec reported it
  }
  return std::make_unique<OrderedPlanner>(*std::move(order));
}

std::vector<std::unique_ptr<Planner>> ZbH2Definition::MakePlanners(
    const StepSpec& spec, const PlannerClock& /*clock*/) const {
  return FrozenZeroBubblePlanners(spec, ZbH2Budget(spec));
}

STAGEHAND_REGISTER_PLANNER(ZbH2Definition);

}  // namespace stagehand::runtime
