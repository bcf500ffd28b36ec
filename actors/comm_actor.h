// CommActor: a stage's outgoing transfer lane. Delivers TensorMessages to the destination
// stage, after an optional injected link latency and bandwidth (transfers on one lane are
// serialised by bandwidth, latency overlaps). Not a network transport: in-process only;
// UCX and NCCL lanes come with the cluster launcher.
#ifndef STAGEHAND_ACTORS_COMM_ACTOR_H_
#define STAGEHAND_ACTORS_COMM_ACTOR_H_

#include <chrono>
#include <vector>

#include "actors/interfaces.h"
#include "caf/all.hpp"
#include "runtime/trace/recorder.h"

namespace stagehand::actors {

struct LinkModel {
  double latency_us = 0.0;  // added to every transfer
  double gbps = 0.0;        // link bandwidth in gigabits per second; 0 = unlimited
};

struct CommActorState {
  std::vector<tensor_inbox> stages;  // destination stage actors by stage index
  LinkModel link;
  std::chrono::steady_clock::time_point lane_free_at;
  runtime::trace::TraceRecorder::SendLane* trace = nullptr;  // may be null
};

// `trace`, if not null, records each transfer from hand-off to delivery.
comm_actor::behavior_type CommActor(comm_actor::stateful_pointer<CommActorState> self,
                                    LinkModel link, runtime::trace::TraceRecorder::SendLane* trace);

}  // namespace stagehand::actors

#endif  // STAGEHAND_ACTORS_COMM_ACTOR_H_
