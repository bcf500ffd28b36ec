// ZB-V (zero bubble, Qi et al. 2024): two chunks per stage in a V (chunk s and chunk
// 2P-1-s on stage s, so stage 0 holds the embedding and the head), I and W split, with
// 1F1B's peak memory (2P chunk activations, i.e. P microbatches of a whole stage). Not
// hand-laid: the zero-bubble policy plans it, frozen at unit cost.
#ifndef STAGEHAND_RUNTIME_PLANNERS_ZB_V_H_
#define STAGEHAND_RUNTIME_PLANNERS_ZB_V_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/planner.h"
#include "runtime/step_spec.h"

namespace stagehand::runtime {

// Registered as "zb_v".
class ZbVDefinition : public PlannerDefinition {
 public:
  std::string name() const override { return "zb_v"; }
  std::string description() const override;
  // 2P chunks in VPlacement, split backward. The budget is max_inflight, or 2P when 0;
  // InvalidArgument if the plan cannot finish within it.
  absl::StatusOr<StepSpec> MakeSpec(const PlannerOptions& options) const override;
  std::unique_ptr<Planner> MakePlanner(const StepSpec& spec, int stage) const override;
  // The frozen plan simulated once for every stage.
  std::vector<std::unique_ptr<Planner>> MakePlanners(const StepSpec& spec,
                                                     const PlannerClock& clock) const override;
};

// The chunk activations a ZB-V stage may hold: max_inflight, or 2P when it is 0.
int ZbVBudget(const StepSpec& spec);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_PLANNERS_ZB_V_H_
