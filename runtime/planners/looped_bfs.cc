// Looped BFS as an OrderedPlanner: two phases, all forwards chunk by chunk, then all
// backwards chunk by chunk in reverse. Not 1F1B: no forward waits for a backward.
#include "runtime/planners/looped_bfs.h"

#include "absl/strings/str_cat.h"
#include "runtime/planners/planner_spec.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {
namespace {

constexpr int kDefaultChunksPerStage = 2;

}  // namespace

std::string LoopedBfsDefinition::description() const {
  return "looped BFS: v chunks per stage (chunks_per_stage, default 2); all forwards chunk by "
         "chunk, then all backwards; holds v*M activations per stage";
}

absl::StatusOr<StepSpec> LoopedBfsDefinition::MakeSpec(const PlannerOptions& options) const {
  const int v = options.chunks_per_stage > 0 ? options.chunks_per_stage : kDefaultChunksPerStage;
  ASSIGN_OR_RETURN(StepSpec spec, StandardSpec(options, v, Backward::kFused));
  const int held = v * options.num_microbatches;
  if (options.max_inflight > 0 && options.max_inflight < held) {
    return absl::InvalidArgumentError(absl::StrCat(
        "looped_bfs holds v * num_microbatches = ", held,
        " activations (microbatch-chunks) per stage, above max_inflight = ", options.max_inflight,
        "; use interleaved, which holds fewer"));
  }
  return spec;
}

std::vector<Action> LoopedBfsOrder(const StepSpec& spec, int stage) {
  // M = num_microbatches; the stage's chunks ascending: chunk k*P + s for k in [0, v).
  const std::vector<int> chunks = ChunksOnStage(spec, stage);
  std::vector<Action> order;
  // 1. forwards: for each chunk ascending, F(mb) for mb in [0, M).
  for (int chunk : chunks) {
    for (int mb = 0; mb < spec.num_microbatches; ++mb) {
      order.push_back(Action{stage, ActionKind::kForward, chunk, mb});
    }
  }
  // 2. backwards: for each chunk descending, B(mb) for mb in [0, M) (ascending, so that
  //    gradients accumulate in the order of the sequential run).
  for (auto it = chunks.rbegin(); it != chunks.rend(); ++it) {
    for (int mb = 0; mb < spec.num_microbatches; ++mb) {
      order.push_back(Action{stage, ActionKind::kBackward, *it, mb});
    }
  }
  return order;
}

std::unique_ptr<Planner> LoopedBfsDefinition::MakePlanner(const StepSpec& spec, int stage) const {
  return std::make_unique<OrderedPlanner>(LoopedBfsOrder(spec, stage));
}

STAGEHAND_REGISTER_PLANNER(LoopedBfsDefinition);

}  // namespace stagehand::runtime
