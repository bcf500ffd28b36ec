// Gates: the actors that stand between the network and the step protocol's actors. A
// StageGate (one per hosted stage, on its worker) takes the driver's messages for its
// stage; the DriverGate (rank 0) takes every stage's messages for the driver. Both check
// what arrives (stage indices, chunks, steps, tensor names and sizes: checks.h) before forwarding,
// and turn a bad message into an error naming its sender. Not decision makers: they forward or
// refuse.
#ifndef STAGEHAND_ACTORS_CLUSTER_GATES_H_
#define STAGEHAND_ACTORS_CLUSTER_GATES_H_

#include <cstdint>
#include <memory>
#include <string>

#include "actors/cluster/cluster_messages.h"
#include "caf/all.hpp"
#include "runtime/step_spec.h"
#include "runtime/train/step_specs.h"

namespace stagehand::actors::cluster {

struct StageGateInit {
  int rank = 0;
  int stage = 0;
  runtime::StepSpec spec;
  int64_t wte_floats = 0;         // vocab * d_model (0: untied head): tied gradients' size
  stage_actor fronted;            // the StageActor this gate fronts
  cluster_comm_actor comm;        // its ClusterComm: told the step, asked for transfers in flight
  driver_gate_actor driver_gate;  // where hang reports go
  abort_inbox supervisor;         // the worker: receives ClusterAbort on a bad message
  trace_steps_actor
      trace_steps;  // traced ranks other than 0: begins each step before it is passed on
  int replica = 0;  // --dp: the replica whose stage this is
};
struct StageGateState {
  StageGateInit init;
  int64_t step = 0;
};
stage_gate_actor::behavior_type StageGate(stage_gate_actor::stateful_pointer<StageGateState> self,
                                          StageGateInit init);

struct DriverGateInit {
  runtime::StepSpec spec;
  int64_t wte_floats = 0;         // vocab * d_model (0: untied head): tied gradients' size
  stage_reports driver;           // the StepDriver
  coordinator_actor coordinator;  // receives StageReports (hang probes) and ClusterAborts
  // A batch-size ramp-up's specs: a StageDone may carry the losses of any of its Ms (the
  // driver knows which step runs); null: `spec`'s M only.
  std::shared_ptr<const runtime::StepSpecs> specs;
  // --dp: this driver's replica, and the replicas' count (the loss stage gathers every
  // replica's losses: dp x M of them).
  int replica = 0;
  int dp = 1;
};
struct DriverGateState {
  DriverGateInit init;
};
driver_gate_actor::behavior_type DriverGate(
    driver_gate_actor::stateful_pointer<DriverGateState> self, DriverGateInit init);

// Probe wave used for hang reports (StepDriver's own stall probes use positive waves).
inline constexpr int kHangProbeWave = -1;

}  // namespace stagehand::actors::cluster

#endif  // STAGEHAND_ACTORS_CLUSTER_GATES_H_
