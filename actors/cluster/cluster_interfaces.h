// The typed message interfaces (CAF 0.17 typed_actor) of the cluster's actors, declared
// once: the gates, the cross-process transfer lane, TraceSteps, the coordinator and the
// worker. Not the messages: cluster_messages.h defines them (and includes this file, since
// the peer table and the join carry these handles); the step protocol's interfaces, which
// these extend, are actors/interfaces.h.
#ifndef STAGEHAND_ACTORS_CLUSTER_CLUSTER_INTERFACES_H_
#define STAGEHAND_ACTORS_CLUSTER_CLUSTER_INTERFACES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "actors/atoms.h"
#include "actors/interfaces.h"
#include "caf/all.hpp"

namespace stagehand::actors::cluster {

// Defined in cluster_messages.h.
struct JoinRequest;
struct JoinReply;
struct Registration;
struct PeerTable;
struct TransferNotice;
struct CheckpointOrder;
struct CheckpointPart;
struct EvalOrder;
struct EvalResult;
struct Heartbeat;
struct ClusterAbort;
struct StageReport;

// Takes a verdict that stops the run: a worker (its own actors' verdicts) or the coordinator.
using abort_inbox = caf::typed_actor<caf::reacts_to<ClusterAbort>>;

// A StageGate: what the driver sends a stage, checked before it reaches the StageActor.
using stage_gate_actor = stage_control;

// The DriverGate: what stages send the driver, checked, and the stages' hang reports.
using driver_gate_actor = stage_reports::extend<caf::reacts_to<StageReport>>;

// TraceSteps: begins a traced rank's step when its gates ask; forwards the stages' reports.
using trace_steps_actor =
    stage_reports::extend<caf::replies_to<start_atom, int64_t>::with<caf::ok_atom>>;

// ClusterComm: a stage's transfer lane across processes. Takes, in order: outgoing tensors;
// (once, first) this process's stage actors by stage, null where a stage lives elsewhere, its
// own stage among them; (once) the peer table; the step's start (from its gate); a peer
// comm's notice that a tensor is on its way over UCX; UCX's reports that a send and a
// receive completed (tag, error, ok, and the send's end time or the received tensor); and
// two questions: answer ok once no send is in flight, and the transfers in flight as text.
using cluster_comm_actor =
    tensor_inbox::extend<caf::reacts_to<std::vector<stage_actor>>, caf::reacts_to<PeerTable>,
                         caf::reacts_to<start_atom, int64_t>, caf::reacts_to<TransferNotice>,
                         caf::reacts_to<sent_atom, uint64_t, std::string, bool, int64_t>,
                         caf::reacts_to<received_atom, uint64_t, std::string, bool, TensorMessage>,
                         caf::replies_to<drained_atom>::with<caf::ok_atom>,
                         caf::replies_to<pending_atom>::with<std::string>>;

// A worker: what the coordinator sends it (an abort, the peer table, finish: save and leave,
// a checkpoint order: write your shards, an evaluation order: run your held-out part), and
// its own held-out thread's result. The worker is a blocking (scoped) actor, which CAF 0.17
// cannot type: its handle is cast to this interface once, where it is made (worker_node.cc),
// and its receive loops take exactly these.
using worker_actor =
    abort_inbox::extend<caf::reacts_to<PeerTable>, caf::replies_to<finish_atom>::with<caf::ok_atom>,
                        caf::replies_to<CheckpointOrder>::with<CheckpointPart>,
                        caf::reacts_to<EvalOrder>, caf::reacts_to<eval_done_atom, EvalResult>>;

// The coordinator: rendezvous (join, registration, ready; the Gloo groups' store entries:
// set (rank, key, value) -> error or "", get (rank, key) -> found, value), liveness (heartbeats,
// hang reports, aborts), the held-out results, rank 0's answer to finish_atom, and its own timers
// (the heartbeat check; is this step, is this evaluation still running?).
using coordinator_actor = abort_inbox::extend<
    caf::replies_to<JoinRequest>::with<JoinReply>, caf::reacts_to<Registration>,
    caf::reacts_to<ready_atom, int>, caf::reacts_to<Heartbeat>, caf::reacts_to<StageReport>,
    caf::reacts_to<EvalResult>, caf::reacts_to<caf::ok_atom>, caf::reacts_to<check_atom>,
    caf::reacts_to<hang_atom, int64_t>, caf::reacts_to<eval_hang_atom, int64_t>,
    caf::replies_to<store_set_atom, int, std::string, std::string>::with<std::string>,
    caf::replies_to<store_get_atom, int, std::string>::with<bool, std::string>>;

}  // namespace stagehand::actors::cluster

#endif  // STAGEHAND_ACTORS_CLUSTER_CLUSTER_INTERFACES_H_
