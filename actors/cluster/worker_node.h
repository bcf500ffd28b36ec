// WorkerNode: everything one worker process runs. It builds the chunks of its stages,
// their lanes, stage actors, gates and comm actors and a UCX transport; rank 0 also hosts
// the StepDriver and publishes the Coordinator. It joins with the launch's token, connects
// UCX to its peers, sends heartbeats, and leaves when the coordinator says finish or
// abort; with `trace` set it records its stages and writes their trace at the end (the
// launcher merges the ranks' files). Not a launcher (tools/launch starts workers) and not a flag parser (tools/worker).
#ifndef STAGEHAND_ACTORS_CLUSTER_WORKER_NODE_H_
#define STAGEHAND_ACTORS_CLUSTER_WORKER_NODE_H_

#include <string>

#include "absl/status/status.h"
#include "models/gpt_config.h"
#include "runtime/checkpoint/checkpoint.h"
#include "runtime/data/dataset.h"
#include "runtime/planner.h"
#include "runtime/train/training.h"

namespace stagehand::actors::cluster {

struct WorkerOptions {
  // Rendezvous.
  int rank = 0;
  int world_size = 1;
  std::string coordinator_host = "127.0.0.1";  // where rank 0 publishes
  int coordinator_port = 0;
  std::string bind = "127.0.0.1";              // rank 0 publishes on this address
  std::string token;
  double join_timeout_s = 60;
  // Training: must be the same on every rank (checked at join via `config_text`).
  models::GptConfig model;                       // vocab_size: the tokenizer's
  models::ChunkOptions chunk;
  const runtime::PlannerDefinition* planner = nullptr;  // not owned; validated by the caller
  runtime::PlannerOptions planner_options;
  runtime::OptimizerConfig optimizer;            // `states` is set here
  int steps = 1;
  int stop_after = 0;                            // --exit_after: stop cleanly after this step
  int log_every = 1;
  const runtime::Dataset* dataset = nullptr;     // not owned: training windows from its `train`
  std::string save_params;  // each rank writes its chunks to <stem>.rank<R>.safetensors
  // Tracing: the file this rank writes its trace to at the end (empty: no trace). It holds
  // this rank's stages only; `trace merge` (or the launcher) joins the ranks' files.
  std::string trace;
  double hang_timeout_s = 60;
  // Held-out evaluation (runtime/train/held_out_pass.h) before step 1, after every
  // eval_every-th step and after the last: eval_batches batches of the dataset's
  // validation split; 0 batches: none.
  int eval_batches = 0;
  int eval_every = 0;
  std::string config_text;
  // Checkpoints: each rank writes its stages' shards into the checkpoint's temporary folder,
  // rank 0 commits the manifest once every rank has (a checkpoint is complete only then).
  std::string checkpoint_dir;                    // empty: none
  int checkpoint_every = 0;
  int keep_checkpoints = 0;
  runtime::CheckpointMeta checkpoint_meta;       // model, tokenizer, run description and history
  std::string resume_dir;                        // a verified checkpoint to start from; empty: step 0
  // Test hooks. Hang report: this rank never posts its Nth receive (0 = off). Restarts:
  // this rank kills itself with SIGKILL in the forward pass of step kill_at_step (0 = off).
  int withhold_receive = 0;
  int64_t kill_at_step = 0;
};

// "<stem>.rank<R>.safetensors" for save_params "<stem>.safetensors" (or "<path>.rank<R>").
std::string RankFile(const std::string& path, int rank);

// Runs the worker until the run finishes (OK) or stops (the error says why). Leaves the
// process to the caller: on error the caller should exit without destroying actors.
absl::Status RunWorker(const WorkerOptions& options);

}  // namespace stagehand::actors::cluster

#endif  // STAGEHAND_ACTORS_CLUSTER_WORKER_NODE_H_
