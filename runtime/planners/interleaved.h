// Interleaved 1F1B (Megatron's virtual pipeline): v model chunks per stage, chunk c on
// stage c % P, 1F1B over (chunk, microbatch) units. Not split-backward (see zb_*).
#ifndef STAGEHAND_RUNTIME_PLANNERS_INTERLEAVED_H_
#define STAGEHAND_RUNTIME_PLANNERS_INTERLEAVED_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/action.h"
#include "runtime/planner.h"
#include "runtime/step_spec.h"

namespace stagehand::runtime {

// Registered as "interleaved". v = options.chunks_per_stage, 2 when 0.
class InterleavedDefinition : public PlannerDefinition {
 public:
  std::string name() const override { return "interleaved"; }
  std::string description() const override;
  // P*v chunks, chunk c on stage c % P, fused backward; InvalidArgument if max_inflight > 0
  // is below the activations the plan holds.
  absl::StatusOr<StepSpec> MakeSpec(const PlannerOptions& options) const override;
  std::unique_ptr<Planner> MakePlanner(const StepSpec& spec, int stage) const override;
};

// Microbatches go in groups of at least P (M // P groups, sizes as equal as possible; one
// group when M < P): the sizes, in order. Groups of >= P keep every chunk's pipeline full,
// which is what makes M not a multiple of P work.
std::vector<int> InterleavedGroups(int num_stages, int num_microbatches);

// The compute actions of `stage`, in interleaved order, for a spec from MakeSpec.
std::vector<Action> InterleavedOrder(const StepSpec& spec, int stage);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_PLANNERS_INTERLEAVED_H_
