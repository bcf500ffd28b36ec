// GPipe: every forward in microbatch order, then every fused backward in microbatch order,
// one chunk per stage. Not memory-aware: each stage holds all M activations at the peak.
#ifndef STAGEHAND_RUNTIME_PLANNERS_GPIPE_H_
#define STAGEHAND_RUNTIME_PLANNERS_GPIPE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/action.h"
#include "runtime/planner.h"
#include "runtime/step_spec.h"

namespace stagehand::runtime {

// Registered as "gpipe".
class GPipeDefinition : public PlannerDefinition {
 public:
  std::string name() const override { return "gpipe"; }
  std::string description() const override;
  // P chunks, chunk s on stage s, fused backward; InvalidArgument if 0 < max_inflight < M.
  absl::StatusOr<StepSpec> MakeSpec(const PlannerOptions& options) const override;
  std::unique_ptr<Planner> MakePlanner(const StepSpec& spec, int stage) const override;
};

// The compute actions of `stage`, in GPipe order, for a spec from GPipeDefinition::MakeSpec.
std::vector<Action> GPipeOrder(const StepSpec& spec, int stage);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_PLANNERS_GPIPE_H_
