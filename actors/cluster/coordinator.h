// Coordinator: rank 0's published actor. Admits workers that present the launch's join
// token (and the same configuration), hands out the peer table, runs the steps through
// the StepDriver, watches every worker (CAF down messages and heartbeats), reports hangs
// and stops the whole cluster when a rank is lost. Not a scheduler and not a trainer.
#ifndef STAGEHAND_ACTORS_CLUSTER_COORDINATOR_H_
#define STAGEHAND_ACTORS_CLUSTER_COORDINATOR_H_

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "actors/cluster/cluster_messages.h"
#include "actors/messages.h"
#include "caf/all.hpp"
#include "runtime/checkpoint/checkpoint.h"
#include "runtime/cluster/admission.h"
#include "runtime/cluster/placement.h"
#include "runtime/cluster/rendezvous_table.h"
#include "runtime/step_spec.h"
#include "runtime/trace/recorder.h"
#include "runtime/train/step_specs.h"
#include "runtime/train/timers.h"
#include "runtime/train/train_loop.h"

namespace stagehand::actors::cluster {

struct CoordinatorOptions {
  std::string token;
  int world_size = 1;
  // --dp: replicas of the pipeline; each has its own step driver (as in one process), and
  // ranks sit on the grid of runtime/cluster/placement.h's ClusterLayout.
  int dp = 1;
  std::string config;  // every worker must present the same text
  runtime::StepSpec spec;
  // A batch-size ramp-up's spec of each step (its M; announced before the step); null: one M.
  std::shared_ptr<const runtime::StepSpecs> specs;
  int micro_batch_size = 0;  // B, for the ramp-up's global-batch line
  int64_t wte_floats = 0;    // vocab * d_model, 0 untied: the tied gradients (DriverGate checks)
  // The training loop's policy (runtime/train/train_loop.h): which steps run, when to log,
  // evaluate and checkpoint, when to stop. The coordinator only carries out its phases.
  runtime::TrainLoopOptions loop;
  int64_t resumed_step = 0;    // the restored checkpoint's step (0 without one)
  double hang_timeout_s = 60;  // a step running longer is reported, then the run stops
  double heartbeat_timeout_s = 8;
  // Held-out evaluation: every rank runs its part of the pass over `eval_batches` batches,
  // the rank holding the last chunk answers with the loss.
  int eval_batches = 0;
  // Checkpoints (none when `checkpoint_dir` is empty): every rank writes its stages' shards
  // into the temporary folder; the coordinator commits once all have (runtime/checkpoint).
  std::string checkpoint_dir;
  int keep_checkpoints = 0;
  // Model, tokenizer and run description of the manifests; run["history"] holds the losses
  // up to resumed_step, and the loop appends.
  runtime::CheckpointMeta meta;
  // Rank 0's trace recorder, or null: the coordinator is the one writer of its step
  // boundaries (it asks the driver for each step, as Pipeline::RunStep does in one process).
  runtime::trace::TraceRecorder* trace = nullptr;
  bool log_timers = false;  // phase timers with each step line (runtime/train/timers.h)
};

struct CoordinatorState {
  CoordinatorOptions options;
  std::optional<runtime::ClusterLayout> layout;  // where every rank sits
  std::vector<step_driver_actor> drivers;        // per replica
  std::vector<driver_gate_actor> driver_gates;   // per replica
  // The Gloo groups' rendezvous entries (control_plane_store.h), kept here.
  std::optional<runtime::RendezvousTable> rendezvous;
  std::map<int, JoinRequest> joined;       // rank -> join
  std::map<int, Registration> registered;  // rank -> actors
  std::set<int> ready;
  std::set<int> finished;                  // ranks that saved and may leave
  std::map<int, std::string> last_action;  // rank -> from its heartbeats
  std::map<int, std::chrono::steady_clock::time_point> last_heartbeat;
  std::vector<std::vector<stage_gate_actor>> stage_gates;  // replica -> stage -> its gate
  int64_t step = 0;
  std::vector<StepOutcome> outcomes;  // the running step's, per replica (replica 0's wins)
  int outcomes_pending = 0;
  std::optional<runtime::TrainLoop> loop;         // the run's phases and loss history
  std::optional<runtime::HeldOutRound> held_out;  // the evaluation running, if any
  std::map<int, CheckpointPart> parts;  // rank -> its part of the checkpoint being written
  int64_t checkpoint_step = -1;         // the checkpoint being written, -1: none
  bool running = false;
  bool stopping = false;
  std::vector<StageReport> reports;            // hang probe answers
  std::optional<runtime::PhaseTimers> timers;  // --log_timers: since step timers_from
  int64_t timers_from = 1;
  std::chrono::steady_clock::time_point eval_began;  // the running evaluation's order
};

// `drivers`: one StepDriver (this process) per replica, options.dp of them; their gates are
// spawned by the coordinator.
coordinator_actor::behavior_type Coordinator(
    coordinator_actor::stateful_pointer<CoordinatorState> self, CoordinatorOptions options,
    std::vector<step_driver_actor> drivers);

}  // namespace stagehand::actors::cluster

#endif  // STAGEHAND_ACTORS_CLUSTER_COORDINATOR_H_
