// StepDriver: starts a step on every stage, notices when the step is done, stalled or
// failed, and runs the optimizer step's phases (tied-gradient sum, global-norm clip,
// AdamW) across the stages. Before the optimizer it asks the rerun state machine
// (runtime/train/rerun.h) about the step, and re-runs, skips or stops as it says: it sees
// every stage's losses and norms, so the check is global across ranks. Not a scheduler: it
// never picks compute actions.
#ifndef STAGEHAND_ACTORS_STEP_DRIVER_H_
#define STAGEHAND_ACTORS_STEP_DRIVER_H_

#include <chrono>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "actors/interfaces.h"
#include "actors/messages.h"
#include "caf/all.hpp"
#include "runtime/stall_detector.h"
#include "runtime/step_spec.h"
#include "runtime/train/rerun.h"
#include "runtime/train/timers.h"

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
  std::vector<double> busy_seconds;                                              // per stage
  std::map<int, std::map<int, std::map<std::string, std::vector<float>>>> tied;  // stage -> ...
  std::map<int, std::vector<double>> norms;       // chunk -> per-tensor squared norms
  std::map<int, std::vector<std::string>> names;  // chunk -> tensor names of `norms`
  int optimizer_done = 0;
  double grad_norm = 0.0;
  runtime::RerunStateMachine rerun{runtime::RerunOptions{}, {}};
  runtime::StepVerdict pending = runtime::StepVerdict::kApply;  // after the discard
  int runs = 1;
  std::vector<std::string> notes;
  // Timers (runtime/train/timers.h): per stage, seconds by phase over every run of the step,
  // and when the step began.
  std::vector<runtime::PhaseSeconds> phases;
  std::chrono::steady_clock::time_point began;
};

// `stage_rank`: each stage's rank (empty: one process), for the reports.
step_driver_actor::behavior_type StepDriver(
    step_driver_actor::stateful_pointer<StepDriverState> self, runtime::StepSpec spec,
    double grad_clip, runtime::RerunOptions rerun, std::vector<int> stage_rank);

}  // namespace stagehand::actors

#endif  // STAGEHAND_ACTORS_STEP_DRIVER_H_
