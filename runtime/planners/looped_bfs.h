// Looped BFS (breadth-first pipeline): v chunks per stage, chunk c on stage c % P; each
// stage runs every microbatch through its chunks in order, then every backward through them
// in reverse. Not memory-aware: a stage holds all v*M activations at the peak.
#ifndef STAGEHAND_RUNTIME_PLANNERS_LOOPED_BFS_H_
#define STAGEHAND_RUNTIME_PLANNERS_LOOPED_BFS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/action.h"
#include "runtime/planner.h"
#include "runtime/step_spec.h"

namespace stagehand::runtime {

// Registered as "looped_bfs". v = options.chunks_per_stage, 2 when 0.
class LoopedBfsDefinition : public PlannerDefinition {
 public:
  std::string name() const override { return "looped_bfs"; }
  std::string description() const override;
  // P*v chunks, chunk c on stage c % P, fused backward; InvalidArgument if
  // 0 < max_inflight < v*M.
  absl::StatusOr<StepSpec> MakeSpec(const PlannerOptions& options) const override;
  std::unique_ptr<Planner> MakePlanner(const StepSpec& spec, int stage) const override;
};

// The compute actions of `stage`, in looped-BFS order, for a spec from MakeSpec.
std::vector<Action> LoopedBfsOrder(const StepSpec& spec, int stage);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_PLANNERS_LOOPED_BFS_H_
