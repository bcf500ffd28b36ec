// 1F1B (PipeDream-Flush): a warm-up of forwards, then one forward / one fused backward,
// then the remaining backwards; one chunk per stage. Not interleaved, not split-backward.
#ifndef STAGEHAND_RUNTIME_PLANNERS_ONE_F_ONE_B_H_
#define STAGEHAND_RUNTIME_PLANNERS_ONE_F_ONE_B_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/action.h"
#include "runtime/planner.h"
#include "runtime/step_spec.h"

namespace stagehand::runtime {

// Registered as "1f1b".
class OneFOneBDefinition : public PlannerDefinition {
 public:
  std::string name() const override { return "1f1b"; }
  std::string description() const override;
  // P chunks, chunk s on stage s, fused backward; InvalidArgument if
  // 0 < max_inflight < min(P, M), the activations stage 0 holds.
  absl::StatusOr<StepSpec> MakeSpec(const PlannerOptions& options) const override;
  std::unique_ptr<Planner> MakePlanner(const StepSpec& spec, int stage) const override;
};

// Registered as "1f1b_overlap": 1F1B with the steady state's F/B pairs overlapped at
// sub-layer granularity (Megatron's combined 1F1B): an MoE chunk's actions run as sub-steps,
// and an F may start while a B runs (and a B while an F runs, and in the warm-up an F while
// an F runs), so that one microbatch's dispatch / combine runs on the communication lane under
// the other's compute. As in
// Megatron, one more warm-up forward (stage s holds min(P - s + 1, M) activations), so that a
// pair's B has its gradient when its F starts. The order within a pair follows from ready
// sub-steps, oldest action first.
class OneFOneBOverlapDefinition : public OneFOneBDefinition {
 public:
  std::string name() const override { return "1f1b_overlap"; }
  std::string description() const override;
  // 1f1b's spec; InvalidArgument if 0 < max_inflight < min(P + 1, M).
  absl::StatusOr<StepSpec> MakeSpec(const PlannerOptions& options) const override;
  std::unique_ptr<Planner> MakePlanner(const StepSpec& spec, int stage) const override;
  bool OverlapsSubSteps() const override { return true; }
};

// The compute actions of `stage`, in 1F1B order, for a spec from OneFOneBDefinition::MakeSpec.
// `extra_warmup` forwards more in the warm-up (1f1b_overlap: 1), fewer in the cool-down.
std::vector<Action> OneFOneBOrder(const StepSpec& spec, int stage, int extra_warmup = 0);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_PLANNERS_ONE_F_ONE_B_H_
