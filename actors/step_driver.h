// StepDriver: starts a step on every stage, notices when the step is done, stalled or
// failed, and runs the optimizer step's phases (tied-gradient sum, global-norm clip,
// AdamW) across the stages. Not a scheduler: it never picks compute actions.
#ifndef STAGEHAND_ACTORS_STEP_DRIVER_H_
#define STAGEHAND_ACTORS_STEP_DRIVER_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "actors/interfaces.h"
#include "actors/messages.h"
#include "caf/all.hpp"
#include "runtime/stall_detector.h"
#include "runtime/step_spec.h"

namespace stagehand::actors {

struct StepDriverState {
  runtime::StepSpec spec;
  double grad_clip = 1.0;
  std::vector<stage_control> stages;  // stage actors, or (cluster) their gates
  caf::typed_response_promise<StepOutcome> promise;
  int64_t step = 0;
  bool active = false;
  runtime::StallDetector stall{0};
  std::set<int> done;
  std::vector<double> losses;
  std::vector<double> busy_seconds;  // per stage
  std::map<int, std::map<int, std::map<std::string, std::vector<float>>>> tied;  // stage -> ...
  std::map<int, std::vector<double>> norms;  // chunk -> per-tensor squared norms
  int optimizer_done = 0;
  double grad_norm = 0.0;
};

step_driver_actor::behavior_type StepDriver(step_driver_actor::stateful_pointer<StepDriverState> self,
                                            runtime::StepSpec spec, double grad_clip);

}  // namespace stagehand::actors

#endif  // STAGEHAND_ACTORS_STEP_DRIVER_H_
