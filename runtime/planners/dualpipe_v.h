// DualPipeV (DeepSeek's DualPipe folded into a V, as torch's ScheduleDualPipeV): two chunks
// per stage in a V, a forward of one microbatch paired with a backward of another in the
// main phase, zero-bubble B/W splits at the edges. Not the bidirectional DualPipe: one
// model copy, one direction of microbatches.
#ifndef STAGEHAND_RUNTIME_PLANNERS_DUALPIPE_V_H_
#define STAGEHAND_RUNTIME_PLANNERS_DUALPIPE_V_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/action.h"
#include "runtime/planner.h"
#include "runtime/step_spec.h"

namespace stagehand::runtime {

// Registered as "dualpipe_v".
class DualPipeVDefinition : public PlannerDefinition {
 public:
  std::string name() const override { return "dualpipe_v"; }
  std::string description() const override;
  // 2P chunks in VPlacement, split backward (a full backward is I then W at once).
  // InvalidArgument if M < 2P (the phases need that many microbatches) or if max_inflight
  // > 0 is below what the plan holds.
  absl::StatusOr<StepSpec> MakeSpec(const PlannerOptions& options) const override;
  std::unique_ptr<Planner> MakePlanner(const StepSpec& spec, int stage) const override;
  // Its F&B pairs overlap at sub-layer granularity on MoE chunks, as 1f1b_overlap's.
  bool OverlapsSubSteps() const override { return true; }
};

// The compute actions of `stage`, in DualPipeV order, for a spec from MakeSpec.
std::vector<Action> DualPipeVOrder(const StepSpec& spec, int stage);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_PLANNERS_DUALPIPE_V_H_
