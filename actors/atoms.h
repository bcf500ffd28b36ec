// Every atom of the actor runtime and the cluster, declared once (CAF 0.17 atom constants):
// each names one message of the interfaces in actors/interfaces.h and
// actors/cluster/cluster_interfaces.h. Not the message types: those are messages.h and
// cluster/cluster_messages.h.
#ifndef STAGEHAND_ACTORS_ATOMS_H_
#define STAGEHAND_ACTORS_ATOMS_H_

#include "caf/all.hpp"

namespace stagehand::actors {

// -- The step protocol (one process or many) --
// driver -> stage: begin step `step`.                      (start_atom, int64 step)
using start_atom = caf::atom_constant<caf::atom("start")>;
// stage -> microbatch actor: run a compute action, the ticket-th the stage sent to its lane.
//                                                             (run_atom, ActionKind, ticket)
using run_atom = caf::atom_constant<caf::atom("run")>;
// stage -> microbatch actor: hand the output on.            (ship_atom, ShipOrder)
using ship_atom = caf::atom_constant<caf::atom("ship")>;
// driver <-> stage: stall probe and its answer.             (probe_atom, int wave)
using probe_atom = caf::atom_constant<caf::atom("probe")>;
// main thread -> driver: run one step; replies StepOutcome. (step_atom, int64 step)
using step_atom = caf::atom_constant<caf::atom("step")>;
// optimizer phases, driver -> stage and stage -> driver.
using tied_atom = caf::atom_constant<caf::atom("tied")>;
using optim_atom = caf::atom_constant<caf::atom("optim")>;
// driver -> stage: zero this step's gradients instead of applying them (a rerun, a skip).
using discard_atom = caf::atom_constant<caf::atom("discard")>;
// driver -> stage: run step `step` again, same data (the rerun state machine). (rerun_atom, int64)
using rerun_atom = caf::atom_constant<caf::atom("rerun")>;
// caller -> driver: the applied steps' losses so far (a resumed run's), for the spike check.
using history_atom = caf::atom_constant<caf::atom("history")>;

namespace cluster {

// coordinator -> every stage's comm actor (via its gate): report transfers in flight.
using pending_atom = caf::atom_constant<caf::atom("pending")>;
// coordinator -> worker: run finished, save and leave.      (finish_atom)
using finish_atom = caf::atom_constant<caf::atom("finish")>;
// worker -> coordinator: UCX endpoints are up.              (ready_atom, int rank)
using ready_atom = caf::atom_constant<caf::atom("ready")>;
// coordinator -> itself: is step `step` still running?     (hang_atom, int64 step)
using hang_atom = caf::atom_constant<caf::atom("hang")>;
// coordinator -> itself: is the held-out pass after `step` still running? (eval_hang_atom, int64)
using eval_hang_atom = caf::atom_constant<caf::atom("evalhang")>;
// coordinator -> itself, every second: heartbeat check.    (check_atom)
using check_atom = caf::atom_constant<caf::atom("check")>;
// a worker's held-out pass thread -> its own worker actor: done (eval_done_atom, EvalResult)
using eval_done_atom = caf::atom_constant<caf::atom("evaldone")>;
// worker -> ClusterComm after the run: answers (ok) once no send is in flight.
using drained_atom = caf::atom_constant<caf::atom("drained")>;
// UCX progress thread -> ClusterComm: a send completed.
//   (sent_atom, uint64 tag, string error, bool ok, int64 done_ns)
using sent_atom = caf::atom_constant<caf::atom("sent")>;
// UCX progress thread -> ClusterComm: a receive completed.
//   (received_atom, uint64 tag, string error, bool ok, TensorMessage)
using received_atom = caf::atom_constant<caf::atom("received")>;

// worker -> coordinator: a Gloo rendezvous entry (control_plane_store.h).
//   (store_set_atom, int rank, string key, string value) -> string error ("" when stored)
using store_set_atom = caf::atom_constant<caf::atom("storeset")>;
//   (store_get_atom, int rank, string key) -> (bool found, string value)
using store_get_atom = caf::atom_constant<caf::atom("storeget")>;

}  // namespace cluster
}  // namespace stagehand::actors

#endif  // STAGEHAND_ACTORS_ATOMS_H_
