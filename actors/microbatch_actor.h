// MicrobatchActor: one per (chunk, microbatch) held by a stage. It holds the inputs that
// arrived for its microbatch on its chunk, runs the compute its stage's planner picked on
// the stage's lane, and ships its outputs on. Not a decision maker: its stage decides.
#ifndef STAGEHAND_ACTORS_MICROBATCH_ACTOR_H_
#define STAGEHAND_ACTORS_MICROBATCH_ACTOR_H_

#include <vector>

#include "actors/interfaces.h"
#include "actors/lane.h"
#include "caf/all.hpp"
#include "runtime/trace/recorder.h"
#include "runtime/train/stage_work.h"

namespace stagehand::actors {

struct MicrobatchActorInit {
  int stage = 0;
  int chunk = 0;
  int microbatch = 0;
  stage_actor owner;  // its stage: where inputs come from and ComputeDone goes
  tensor_inbox comm;  // the stage's outgoing transfer lane
  Lane* lane = nullptr;
  runtime::StageWork* work = nullptr;
  // May be null; written on `lane`, or, for a work that completes later, by its completions
  // (one thread, in order: StageWork::OnComplete).
  runtime::trace::TraceRecorder::ComputeLane* trace = nullptr;
  // Sub-steps (fine-grained callables): the stage's communication lane for dispatch and
  // combine; null when the stage runs whole actions.
  Lane* comm_lane = nullptr;
  // Sub-steps: where dispatch / combine are traced (the trace's a2a lane); may be null.
  runtime::trace::TraceRecorder::ComputeLane* a2a_trace = nullptr;
};

struct MicrobatchActorState {
  MicrobatchActorInit init;
  std::vector<float> activation_in, gradient_in;  // inputs of F and B
  std::vector<float> output;                      // the latest output, until shipped
};

microbatch_actor::behavior_type MicrobatchActor(
    microbatch_actor::stateful_pointer<MicrobatchActorState> self, MicrobatchActorInit init);

}  // namespace stagehand::actors

#endif  // STAGEHAND_ACTORS_MICROBATCH_ACTOR_H_
