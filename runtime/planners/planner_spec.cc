// PlannerSpec: option validation and the fields every planner's StepSpec shares.
// Not a placement policy: StandardPlacement and VPlacement live in runtime/step_spec.h.
#include "runtime/planners/planner_spec.h"

#include <utility>
#include <vector>

#include "runtime/util/status_macros.h"

namespace stagehand::runtime {
namespace {

absl::StatusOr<StepSpec> SpecWith(const PlannerOptions& options, std::vector<int> placement,
                                  Backward backward) {
  RETURN_IF_ERROR(ValidatePlannerOptions(options));
  StepSpec spec;
  spec.num_stages = options.num_stages;
  spec.num_microbatches = options.num_microbatches;
  spec.num_chunks = static_cast<int>(placement.size());
  spec.chunk_to_stage = std::move(placement);
  spec.split_backward = backward == Backward::kSplit;
  spec.max_inflight = options.max_inflight;
  return spec;
}

}  // namespace

absl::StatusOr<StepSpec> StandardSpec(const PlannerOptions& options, int chunks_per_stage,
                                      Backward backward) {
  return SpecWith(options, StandardPlacement(options.num_stages, chunks_per_stage), backward);
}

absl::StatusOr<StepSpec> VSpec(const PlannerOptions& options, Backward backward) {
  return SpecWith(options, VPlacement(options.num_stages), backward);
}

}  // namespace stagehand::runtime
