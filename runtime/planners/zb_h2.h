// ZB-H2 (zero bubble, Qi et al. 2023): ZB-H1 with twice its memory budget (2P activations
// per stage), so that stages fill the warm-up with forwards and the tail with W's: the
// parallelogram layout. Not bubble-free under a synchronised optimizer: the tail waits for
// the last gradient; the idle left is no more than ZB-H1's.
#ifndef STAGEHAND_RUNTIME_PLANNERS_ZB_H2_H_
#define STAGEHAND_RUNTIME_PLANNERS_ZB_H2_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/planner.h"
#include "runtime/step_spec.h"

namespace stagehand::runtime {

// Registered as "zb_h2".
class ZbH2Definition : public PlannerDefinition {
 public:
  std::string name() const override { return "zb_h2"; }
  std::string description() const override;
  // P chunks, chunk s on stage s, split backward. The budget is max_inflight, or 2P when
  // 0; InvalidArgument if the plan cannot finish within it.
  absl::StatusOr<StepSpec> MakeSpec(const PlannerOptions& options) const override;
  // ZeroBubblePolicy's unit-cost plan of `spec`, frozen into an OrderedPlanner.
  std::unique_ptr<Planner> MakePlanner(const StepSpec& spec, int stage) const override;
  // The frozen plan simulated once for every stage.
  std::vector<std::unique_ptr<Planner>> MakePlanners(const StepSpec& spec,
                                                     const PlannerClock& clock) const override;
};

// The activations a ZB-H2 stage may hold: max_inflight, or 2P when it is 0.
int ZbH2Budget(const StepSpec& spec);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_PLANNERS_ZB_H2_H_
