// ZeroBubblePolicy: the event-driven greedy rule behind zb_h2 and zb_v (critical-path B
// first, then F within a memory budget, then W to fill what would be a bubble), and the
// plan it makes in the unit-cost simulation, frozen into per-stage orders. Not registered:
// the planners that use it decide placement and budget.
#ifndef STAGEHAND_RUNTIME_PLANNERS_ZERO_BUBBLE_POLICY_H_
#define STAGEHAND_RUNTIME_PLANNERS_ZERO_BUBBLE_POLICY_H_

#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/action.h"
#include "runtime/planner.h"
#include "runtime/stage_state.h"
#include "runtime/step_spec.h"

namespace stagehand::runtime {

// For a split-backward step. Among the ready actions, in this order of preference:
//   1. B, oldest microbatch first, then the later chunk (it is on the critical path);
//   2. F while the stage holds fewer than `budget` activations, the later chunk first
//      (it finishes a microbatch sooner), then the oldest microbatch;
//   3. W, oldest microbatch first (it frees an activation and fills an idle step).
// Waits when only F's are ready and the budget is spent.
class ZeroBubblePolicy : public Planner {
 public:
  explicit ZeroBubblePolicy(int budget) : budget_(budget) {}
  std::optional<Action> Next(const std::vector<Action>& ready, const StageState& state) override;

 private:
  int budget_;
};

// The per-stage orders ZeroBubblePolicy(budget) runs in the unit-cost simulation of `spec`
// (F = I = W = 1): the plan the zero-bubble planners freeze and hand to OrderedPlanner, so
// that what runs is what was validated. The simulator's error if it stalls (a budget too
// small for the placement). The last few (spec, budget) plans are kept (thread-safe): MakeSpec
// validates a plan, and every step's MakePlanners, or each stage's MakePlanner in the actor
// runtime, reuses it instead of simulating it again.
absl::StatusOr<std::vector<std::vector<Action>>> ZeroBubbleOrders(const StepSpec& spec, int budget);
// The order of one stage of that plan (the same error; OutOfRange for a bad stage).
absl::StatusOr<std::vector<Action>> ZeroBubbleStageOrder(const StepSpec& spec, int budget,
                                                         int stage);

// Every stage's planner: OrderedPlanner over ZeroBubbleOrders, simulated once for all stages
// (MakePlanner per stage simulates once per stage); the live policy if the orders fail.
std::vector<std::unique_ptr<Planner>> FrozenZeroBubblePlanners(const StepSpec& spec, int budget);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_PLANNERS_ZERO_BUBBLE_POLICY_H_
