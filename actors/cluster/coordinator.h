// Coordinator: rank 0's published actor. Admits workers that present the launch's join
// token (and the same configuration), hands out the peer table, runs the steps through
// the StepDriver, watches every worker (CAF down messages and heartbeats), reports hangs
// and stops the whole cluster when a rank is lost. Not a scheduler and not a trainer.
#ifndef STAGEHAND_ACTORS_CLUSTER_COORDINATOR_H_
#define STAGEHAND_ACTORS_CLUSTER_COORDINATOR_H_

#include <chrono>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "actors/cluster/cluster_messages.h"
#include "actors/messages.h"
#include "caf/all.hpp"
#include "runtime/checkpoint/checkpoint.h"
#include "runtime/step_spec.h"
#include "runtime/trace/recorder.h"

namespace stagehand::actors::cluster {

struct CoordinatorOptions {
  std::string token;
  int world_size = 1;
  std::string config;          // every worker must present the same text
  runtime::StepSpec spec;
  int64_t wte_floats = 0;      // vocab * d_model: the tied gradients' size (DriverGate checks)
  int64_t first_step = 1;      // the step after the restored checkpoint's (1 without one)
  int64_t steps = 1;           // the run's length
  int64_t stop_after = 0;      // stop cleanly after this step when 0 < stop_after < steps
  int log_every = 1;           // print every this many steps' line (and the last)
  double hang_timeout_s = 60;  // a step running longer is reported, then the run stops
  double heartbeat_timeout_s = 8;
  // Held-out evaluation (every rank runs its part of the pass, the rank holding the last
  // chunk answers with the loss): before step 1 of a fresh run, after every
  // `eval_every`-th step (0: none in between) and after step `steps`. 0 batches: none.
  int eval_batches = 0;
  int eval_every = 0;
  // Checkpoints (none when `checkpoint_dir` is empty): after every `checkpoint_every`-th step
  // (0: none in between) and after the last step run. Every rank writes its stages' shards
  // into the temporary folder; the coordinator commits once all have (runtime/checkpoint).
  std::string checkpoint_dir;
  int checkpoint_every = 0;
  int keep_checkpoints = 0;
  // Model, tokenizer and run description of the manifests; run["history"]["train_loss"]
  // and ["validation_loss"] hold the losses before first_step, and the coordinator appends.
  runtime::CheckpointMeta meta;
  // Rank 0's trace recorder, or null: the coordinator is the one writer of its step
  // boundaries (it asks the driver for each step, as Pipeline::RunStep does in one process).
  runtime::trace::TraceRecorder* trace = nullptr;
};

struct CoordinatorState {
  CoordinatorOptions options;
  caf::actor driver;
  caf::actor driver_gate;
  std::map<int, JoinRequest> joined;        // rank -> join
  std::map<int, Registration> registered;   // rank -> actors
  std::set<int> ready;
  std::set<int> finished;                   // ranks that saved and may leave
  std::map<int, std::string> last_action;   // rank -> from its heartbeats
  std::map<int, std::chrono::steady_clock::time_point> last_heartbeat;
  std::vector<int> stage_rank;
  std::vector<caf::actor> stage_gates;
  int64_t step = 0;
  int64_t last_step = 0;                    // steps, or stop_after
  std::vector<double> losses;               // train losses, step 1 at index 0 (resumed ones too)
  std::vector<std::pair<int64_t, double>> validation;  // (step, held-out loss), resumed ones too
  std::map<int, EvalResult> eval_results;   // rank -> its answer to the evaluation running
  int64_t eval_step = -1;                   // the evaluation running (after this step), -1: none
  std::function<void()> after_eval;         // what follows it
  std::map<int, CheckpointPart> parts;      // rank -> its part of the checkpoint being written
  std::function<void()> after_checkpoint;   // what follows the checkpoint being written
  bool running = false;
  bool stopping = false;
  std::vector<StageReport> reports;         // hang probe answers
};

// `driver` is the StepDriver (this process); the gate is spawned by the coordinator.
caf::behavior Coordinator(caf::stateful_actor<CoordinatorState>* self, CoordinatorOptions options,
                          caf::actor driver);

}  // namespace stagehand::actors::cluster

#endif  // STAGEHAND_ACTORS_CLUSTER_COORDINATOR_H_
