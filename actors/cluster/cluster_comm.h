// ClusterComm: a stage's transfer lane across processes. An outgoing tensor for a stage in
// this process is delivered directly; for a stage elsewhere its payload goes to the UCX
// progress thread and only a TransferNotice (metadata) goes over CAF. An incoming notice is
// checked (sender, stage, chunk, microbatch, size, step) before its receive is posted into a
// pooled buffer (PayloadPool); the completed tensor goes to the stage actor. When tracing,
// it is the one writer of its stage's send lane: a send to another rank spans from its
// hand-off to UCX until UCX reports it complete; a send within the process is an instant,
// as the one-process CommActor records it. Not a scheduler: it never reorders or waits.
#ifndef STAGEHAND_ACTORS_CLUSTER_CLUSTER_COMM_H_
#define STAGEHAND_ACTORS_CLUSTER_CLUSTER_COMM_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "actors/cluster/cluster_messages.h"
#include "actors/cluster/payload_pool.h"
#include "caf/all.hpp"
#include "runtime/step_spec.h"
#include "runtime/trace/recorder.h"
#include "runtime/transport/ucx_transport.h"

namespace stagehand::actors::cluster {

struct ClusterCommInit {
  int rank = 0;
  int stage = 0;
  runtime::StepSpec spec;
  int64_t tensor_floats = 0;  // B * T * C: every activation and gradient (the bound, variable)
  runtime::UcxTransport* transport = nullptr;
  PayloadPool* pool = nullptr;  // receive buffers; finished sends give theirs back
  abort_inbox supervisor;       // the worker: receives ClusterAbort on a transfer error
  int drop_notice = 0;          // test hook: never post the Nth receive (1-based)
  runtime::trace::TraceRecorder::SendLane* trace = nullptr;  // may be null; written here only
  int64_t row_floats = 0;  // B * C under --seq_len_policy=variable, else 0 (NoticeRules)
};

// A send to another rank in flight, as its trace span will show it.
struct TracedSend {
  int64_t step = 0;
  runtime::ActionKind kind = runtime::ActionKind::kSendForward;
  int to_stage = 0, chunk = 0, microbatch = 0;
  int64_t bytes = 0;
  int64_t begin_ns = 0;
};

struct ClusterCommState {
  ClusterCommInit init;
  std::vector<stage_actor> local_stages;  // stage -> actor when in this process
  PeerTable peers;
  int64_t step = 0;
  uint64_t next_sequence = 0;
  int notices = 0;
  std::map<uint64_t, std::string> receiving;  // tag -> what
  std::map<uint64_t, std::string> sending;
  std::vector<TransferNotice> early;      // notices of the next step, before its start
  std::vector<int64_t> early_noticed_ns;  // when each of `early` arrived
  std::map<uint64_t, TracedSend> traced;  // tag -> send in flight (when tracing)
  // Asked after the run (drained_atom): answered once no send is in flight, so that the
  // trace lane has no writer left.
  std::vector<caf::typed_response_promise<caf::ok_atom>> drain_waiters;
};

cluster_comm_actor::behavior_type ClusterComm(
    cluster_comm_actor::stateful_pointer<ClusterCommState> self, ClusterCommInit init);

}  // namespace stagehand::actors::cluster

#endif  // STAGEHAND_ACTORS_CLUSTER_CLUSTER_COMM_H_
