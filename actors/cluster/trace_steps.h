// TraceSteps: on a traced worker other than rank 0, the one writer of the step boundaries
// in the rank's TraceRecorder (StepBegan / StepEnded), and so of the step every event of
// the rank is tagged with. Rank 0 needs none: its coordinator runs the steps and marks them
// as the one-process pipeline does. Not a step driver: it forwards, counts and records.
//
// Begin: the rank's stage gates ask it (start_atom, step) and wait for its answer before
// they pass the start on to their comm and stage actor, so the step is set before any event
// of it on this rank. End: it stands in for the driver towards this rank's stage actors and
// forwards what they send; when the last of the rank's stages reports its optimizer phase
// done (OptimizerDone, sent after the phase's OPTIM span was recorded), the step's work on
// this rank is over, and the step ends before that report goes on to the driver.
#ifndef STAGEHAND_ACTORS_CLUSTER_TRACE_STEPS_H_
#define STAGEHAND_ACTORS_CLUSTER_TRACE_STEPS_H_

#include <cstdint>

#include "actors/cluster/cluster_interfaces.h"
#include "caf/all.hpp"
#include "runtime/trace/recorder.h"

namespace stagehand::actors::cluster {

struct TraceStepsInit {
  runtime::trace::TraceRecorder* trace = nullptr;  // not owned; its steps are written here only
  int local_stages = 1;                            // stages this rank holds
  stage_reports driver;                            // where the stages' messages go on to
};
struct TraceStepsState {
  TraceStepsInit init;
  int64_t step = 0;   // the step begun last
  int optimized = 0;  // this rank's stages done with that step's optimizer phase
};
trace_steps_actor::behavior_type TraceSteps(
    trace_steps_actor::stateful_pointer<TraceStepsState> self, TraceStepsInit init);

}  // namespace stagehand::actors::cluster

#endif  // STAGEHAND_ACTORS_CLUSTER_TRACE_STEPS_H_
