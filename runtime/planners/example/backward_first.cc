// An example of a user's own planner, registered by name from its own Bazel target: an
// event-driven "backward first" rule that behaves like 1F1B. Not built in: copy this folder,
// rename the class and the name, and link your target into tools/launch.
#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "runtime/planner.h"
#include "runtime/planners/planner_spec.h"
#include "runtime/stage_state.h"
#include "runtime/step_spec.h"

namespace my_project {

using stagehand::runtime::Action;
using stagehand::runtime::ActionKind;
using stagehand::runtime::Planner;
using stagehand::runtime::PlannerDefinition;
using stagehand::runtime::PlannerOptions;
using stagehand::runtime::StageState;
using stagehand::runtime::StepSpec;

// One instance per stage per step. Next() is called whenever the stage's compute lane is
// idle and something happened (an input arrived, an action finished); `ready` holds the
// actions whose inputs are there. Return one of them, or nullopt to wait for the next event.
class BackwardFirstPlanner : public Planner {
 public:
  explicit BackwardFirstPlanner(int budget) : budget_(budget) {}

  std::optional<Action> Next(const std::vector<Action>& ready, const StageState& state) override {
    // Backwards, and forwards, go in microbatch order: gradients then accumulate in the
    // order of the sequential run (bitwise-equal results) whatever order inputs arrive in.
    const int chunk = state.chunks().front();  // one chunk per stage (see MakeSpec)
    const std::optional<Action> backward = NextNotStarted(state, ActionKind::kBackward, chunk);
    const std::optional<Action> forward = NextNotStarted(state, ActionKind::kForward, chunk);
    const auto is_ready = [&](const std::optional<Action>& action) {
      return action.has_value() && std::find(ready.begin(), ready.end(), *action) != ready.end();
    };
    // 1. The next backward, if its gradient is here: it frees memory and unblocks the
    //    stage before us.
    if (is_ready(backward)) return backward;
    // 2. Otherwise the next forward, while this stage holds fewer activations than its
    //    budget (what 1F1B holds: P - s).
    if (state.committed_activations() < budget_ && is_ready(forward)) return forward;
    // 3. Otherwise wait for the next event.
    return std::nullopt;
  }

 private:
  // The first action of `kind` on `chunk`, in microbatch order, that has not started.
  static std::optional<Action> NextNotStarted(const StageState& state, ActionKind kind, int chunk) {
    for (int mb = 0; mb < state.spec().num_microbatches; ++mb) {
      const Action action{state.stage(), kind, chunk, mb};
      if (!state.HasStarted(action)) return action;
    }
    return std::nullopt;
  }

  int budget_;
};

// What the registry holds: a name, a line of help, the step's shape, and planners per stage.
class BackwardFirstDefinition : public PlannerDefinition {
 public:
  std::string name() const override { return "example_backward_first"; }
  std::string description() const override {
    return "example user planner: oldest ready backward first, else a forward while the "
           "stage holds fewer than P - s activations (1F1B, decided event by event)";
  }

  // The shape: one chunk per stage, chunk s on stage s, fused backward.
  absl::StatusOr<StepSpec> MakeSpec(const PlannerOptions& options) const override {
    absl::StatusOr<StepSpec> spec =
        stagehand::runtime::StandardSpec(options, 1, stagehand::runtime::Backward::kFused);
    if (!spec.ok()) return spec.status();
    if (options.max_inflight > 0 && options.max_inflight < options.num_stages) {
      return absl::InvalidArgumentError(
          absl::StrCat("example_backward_first lets stage 0 hold num_stages = ", options.num_stages,
                       " activations, above max_inflight = ", options.max_inflight));
    }
    return spec;
  }

  std::unique_ptr<Planner> MakePlanner(const StepSpec& spec, int stage) const override {
    return std::make_unique<BackwardFirstPlanner>(spec.num_stages - stage);
  }
};

// Registers the definition in PlannerRegistry::Default() when this file is linked; the
// cc_library must say alwayslink = 1, or the linker drops this object file.
STAGEHAND_REGISTER_PLANNER(BackwardFirstDefinition);

}  // namespace my_project
