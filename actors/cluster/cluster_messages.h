// The cluster's control-plane messages (CAF middleman, TCP): rendezvous, the peer table,
// transfer notices (metadata only; tensors move over UCX), heartbeats and aborts.
// Not the data plane and not the step protocol: stage/driver messages are actors/messages.h.
#ifndef STAGEHAND_ACTORS_CLUSTER_CLUSTER_MESSAGES_H_
#define STAGEHAND_ACTORS_CLUSTER_CLUSTER_MESSAGES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "actors/cluster/cluster_interfaces.h"
#include "actors/messages.h"
#include "caf/all.hpp"
#include "runtime/action.h"

namespace stagehand::actors::cluster {

// worker -> coordinator: the first message of a connection.
struct JoinRequest {
  std::string token;  // the launch's join token (STAGEHAND_JOIN_TOKEN)
  int rank = 0;
  int world_size = 0;
  std::string config;  // the training configuration as text: must equal rank 0's
  std::string host;
  int64_t pid = 0;
  worker_actor worker;      // receives PeerTable, finish_atom, CheckpointOrder, ClusterAbort
  std::string ucx_address;  // opaque UCP worker address
  int64_t start_step = 0;   // steps already done (restored from a checkpoint): must equal rank 0's
};

struct JoinReply {
  bool accepted = false;
  std::string reason;        // why not
  driver_gate_actor driver;  // the driver gate: the `driver` of this worker's stages
};

// worker -> coordinator: the actors of the stages this worker hosts, by stage.
struct Registration {
  int rank = 0;
  std::vector<int> stages;
  std::vector<stage_gate_actor> gates;    // driver-facing, one per hosted stage
  std::vector<cluster_comm_actor> comms;  // transfer-notice receivers, one per hosted stage
};

// coordinator -> worker: where every stage lives.
struct PeerTable {
  std::vector<int> stage_rank;                  // stage -> rank
  std::vector<cluster_comm_actor> stage_comms;  // stage -> its comm actor
  std::vector<std::string> ucx_addresses;       // rank -> UCP worker address
};

// comm -> comm: a tensor is on its way over UCX under `tag`; post the receive.
struct TransferNotice {
  int64_t step = 0;
  int from_rank = 0;
  uint64_t tag = 0;
  int64_t floats = 0;
  runtime::ActionKind kind =
      runtime::ActionKind::kForward;  // the consumer: kForward / kBackwardInput
  int from_stage = 0;
  int to_stage = 0;
  int chunk = 0;  // destination chunk
  int microbatch = 0;
};

// coordinator -> every worker, between steps: write the shards of your stages for the
// checkpoint of step `step` into `dir` (the checkpoint's temporary folder), then answer.
struct CheckpointOrder {
  int64_t step = 0;
  std::string dir;
};

// worker -> coordinator: the answer to a CheckpointOrder (runtime::ShardRecord, field by field).
struct CheckpointPart {
  int rank = 0;
  int64_t step = 0;
  std::string error;               // why nothing was written; empty when written
  std::vector<std::string> files;  // per shard
  std::vector<int> stages;
  std::vector<uint64_t> bytes;
  std::vector<uint32_t> crc32;
};

// coordinator -> every worker, between steps (and before step 1): run the held-out pass
// (runtime/train/held_out_pass.h) of the evaluation after step `step` over `batches`
// batches, then answer with an EvalResult.
struct EvalOrder {
  int64_t step = 0;
  int batches = 0;
};

// worker -> coordinator: a rank's part of the evaluation after `step`. The rank holding the
// last chunk carries the mean held-out loss; the others only say they are done.
struct EvalResult {
  int rank = 0;
  int64_t step = 0;
  std::string error;  // why the pass failed on this rank; empty when it ran
  bool has_loss = false;
  double loss = 0;
};

// worker -> coordinator, every second: still alive, and what it last did.
struct Heartbeat {
  int rank = 0;
  std::string last_action;
};

// coordinator -> workers (and a worker's own verdict): stop now, with this message.
struct ClusterAbort {
  std::string reason;
};

// A stage's view for the hang report: what its graph waits for, what its lane holds.
struct StageReport {
  int rank = 0;
  int stage = 0;
  std::string text;
  int replica = 0;  // --dp: which replica's stage
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, JoinRequest& x) {
  return f(caf::meta::type_name("JoinRequest"), x.token, x.rank, x.world_size, x.config, x.host,
           x.pid, x.worker, x.ucx_address, x.start_step);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, JoinReply& x) {
  return f(caf::meta::type_name("JoinReply"), x.accepted, x.reason, x.driver);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Registration& x) {
  return f(caf::meta::type_name("Registration"), x.rank, x.stages, x.gates, x.comms);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, PeerTable& x) {
  return f(caf::meta::type_name("PeerTable"), x.stage_rank, x.stage_comms, x.ucx_addresses);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, TransferNotice& x) {
  return f(caf::meta::type_name("TransferNotice"), x.step, x.from_rank, x.tag, x.floats, x.kind,
           x.from_stage, x.to_stage, x.chunk, x.microbatch);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, CheckpointOrder& x) {
  return f(caf::meta::type_name("CheckpointOrder"), x.step, x.dir);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, CheckpointPart& x) {
  return f(caf::meta::type_name("CheckpointPart"), x.rank, x.step, x.error, x.files, x.stages,
           x.bytes, x.crc32);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, EvalOrder& x) {
  return f(caf::meta::type_name("EvalOrder"), x.step, x.batches);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, EvalResult& x) {
  return f(caf::meta::type_name("EvalResult"), x.rank, x.step, x.error, x.has_loss, x.loss);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Heartbeat& x) {
  return f(caf::meta::type_name("Heartbeat"), x.rank, x.last_action);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, ClusterAbort& x) {
  return f(caf::meta::type_name("ClusterAbort"), x.reason);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, StageReport& x) {
  return f(caf::meta::type_name("StageReport"), x.rank, x.stage, x.text, x.replica);
}

// Registers the step messages (actors/messages.h) and the cluster messages with `config`;
// ConfigureClusterSystem also loads the middleman (tests of one process need not).
void RegisterClusterMessageTypes(caf::actor_system_config& config);
void ConfigureClusterSystem(caf::actor_system_config& config);

}  // namespace stagehand::actors::cluster

#endif  // STAGEHAND_ACTORS_CLUSTER_CLUSTER_MESSAGES_H_
