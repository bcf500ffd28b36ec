// ClusterComm: a stage's transfer lane across processes. An outgoing tensor for a stage in
// this process is delivered directly; for a stage elsewhere its payload goes to the UCX
// progress thread and only a TransferNotice (metadata) goes over CAF. An incoming notice is
// checked (sender, stage, chunk, microbatch, size, step) before its receive is posted into a
// pooled buffer (PayloadPool); the completed tensor goes to the stage actor. Not a scheduler: it never reorders or waits.
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
#include "runtime/transport/ucx_transport.h"

namespace stagehand::actors::cluster {

struct ClusterCommInit {
  int rank = 0;
  int stage = 0;
  runtime::StepSpec spec;
  int64_t tensor_floats = 0;              // B * T * C: every activation and gradient
  runtime::UcxTransport* transport = nullptr;
  PayloadPool* pool = nullptr;            // receive buffers; finished sends give theirs back
  caf::actor stage_actor;
  caf::actor supervisor;                  // receives ClusterAbort on a transfer error
  int drop_notice = 0;                    // test hook: never post the Nth receive (1-based)
};

struct ClusterCommState {
  ClusterCommInit init;
  std::vector<caf::actor> local_stages;    // stage -> actor when in this process
  PeerTable peers;
  int64_t step = 0;
  uint64_t next_sequence = 0;
  int notices = 0;
  std::map<uint64_t, std::string> receiving;  // tag -> what
  std::map<uint64_t, std::string> sending;
  std::vector<TransferNotice> early;          // notices of the next step, before its start
};

caf::behavior ClusterComm(caf::stateful_actor<ClusterCommState>* self, ClusterCommInit init);

}  // namespace stagehand::actors::cluster

#endif  // STAGEHAND_ACTORS_CLUSTER_CLUSTER_COMM_H_
