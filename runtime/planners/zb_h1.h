// ZB-H1 (zero bubble, Qi et al. 2023): 1F1B with the backward split into B (input grad)
// and W (weight grad), each stage s deferring s W's into the cool-down, where 1F1B idles.
// Not bubble-free: (P-1)(F+B-W) idle per stage remains, a third of 1F1B's at F=B=W.
#ifndef STAGEHAND_RUNTIME_PLANNERS_ZB_H1_H_
#define STAGEHAND_RUNTIME_PLANNERS_ZB_H1_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/action.h"
#include "runtime/planner.h"
#include "runtime/step_spec.h"

namespace stagehand::runtime {

// Registered as "zb_h1".
class ZbH1Definition : public PlannerDefinition {
 public:
  std::string name() const override { return "zb_h1"; }
  std::string description() const override;
  // P chunks, chunk s on stage s, split backward; InvalidArgument if
  // 0 < max_inflight < min(P, M), the activations every stage holds at its peak.
  absl::StatusOr<StepSpec> MakeSpec(const PlannerOptions& options) const override;
  std::unique_ptr<Planner> MakePlanner(const StepSpec& spec, int stage) const override;
};

// The compute actions of `stage`, in ZB-H1 order, for a spec from ZbH1Definition::MakeSpec.
std::vector<Action> ZbH1Order(const StepSpec& spec, int stage);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_PLANNERS_ZB_H1_H_
