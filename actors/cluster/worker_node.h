// WorkerNode: everything one worker process runs. It builds the chunks of its stages,
// their lanes, stage actors, gates and comm actors and a UCX transport; rank 0 also hosts
// the StepDriver and publishes the Coordinator (on loopback, behind its join-token gate:
// runtime/cluster/auth_gate.h). It joins with the launch's token, connects
// UCX to its peers, sends heartbeats, and leaves when the coordinator says finish or
// abort; with `trace` set it records its stages and writes their trace at the end (the
// launcher merges the ranks' files). Not a launcher (tools/launch starts workers) and not a flag
// parser (tools/worker).
#ifndef STAGEHAND_ACTORS_CLUSTER_WORKER_NODE_H_
#define STAGEHAND_ACTORS_CLUSTER_WORKER_NODE_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "models/gpt_config.h"
#include "runtime/checkpoint/checkpoint.h"
#include "runtime/cluster/fault_plan.h"
#include "runtime/data/dataset.h"
#include "runtime/planner.h"
#include "runtime/train/batch_rampup.h"
#include "runtime/train/grad_buckets.h"
#include "runtime/train/rerun.h"
#include "runtime/train/train_loop.h"
#include "runtime/train/training.h"

namespace stagehand::actors::cluster {

struct WorkerOptions {
  // Rendezvous.
  int rank = 0;
  int world_size = 1;
  std::string coordinator_host = "127.0.0.1";  // where rank 0's gate listens
  int coordinator_port = 0;
  std::string bind = "127.0.0.1";  // rank 0's gate listens on this address (CAF on loopback)
  std::string token;
  double join_timeout_s = 60;
  // Training: must be the same on every rank (checked at join via `config_text`).
  models::GptConfig model;  // vocab_size: the tokenizer's
  models::ChunkOptions chunk;
  std::string partition;                                // --partition (runtime::CutModel)
  const runtime::PlannerDefinition* planner = nullptr;  // not owned; validated by the caller
  runtime::PlannerOptions planner_options;
  // --dp: replicas of the pipeline. Ranks sit on the grid of runtime/cluster/placement.h's
  // ClusterLayout (world_size = dp x stages, one stage per rank, dp varying fastest); each
  // stage sums its gradient buckets over its replicas with Gloo (TCP, bound to the address
  // this rank reaches the coordinator from), which rendezvous through the coordinator.
  int dp = 1;
  double grad_bucket_mb = runtime::kDefaultGradBucketMb;
  // --zero=1: each rank keeps AdamW moments for its 1/dp of its stage's chunks (ZeRO-1, as in
  // one process); before a checkpoint every replica gathers them whole (a collective of the
  // stage's dp group), replica 0 writes them, every replica drops them again.
  int zero = 0;
  // --ep (divides dp): this stage's replicas d with the same d / ep form an expert-parallel
  // group (the rank grid's ep x edp split of dp), a Gloo group of its own whose all-to-alls
  // carry the MoE layers' dispatch and combine (models/expert_exchange.h).
  int ep = 1;
  // --moe_sub_steps: MoE actions as sub-steps under any planner (actors::RunsSubSteps).
  bool moe_sub_steps = false;
  int lane_depth = 1;  // --lane_depth (PipelineOptions::lane_depth)
  // --device=cuda: this rank's stages train on GPU local_rank % (GPUs visible), handing their
  // activations to other ranks through the host (the UCX transport, as floats); with --dp each
  // stage's replicas sum gradient buckets with NCCL (runtime/collectives/nccl_collective.h),
  // the group's id shared through the coordinator's signed store. Needs a worker built with
  // --config=cuda.
  std::string device = "cpu";
  int local_rank = 0;  // among the ranks on this host
  // --link_latency_us / --link_gbps: a modelled link added to every collective call of the
  // data- and expert-parallel groups (runtime/collectives/latency_collective.h); 0: none.
  double collective_latency_us = 0, collective_gbps = 0;
  // --rampup_batch_size: each step's M (every rank re-plans each step alike); absent: the
  // planner options' M every step.
  std::optional<runtime::MicrobatchCalculator> microbatches;
  runtime::OptimizerConfig optimizer;  // `states` is set here
  runtime::RerunOptions rerun;         // rank 0's step driver checks each step
  bool log_timers = false;             // rank 0 prints the phase timers
  // The training loop's policy (runtime/train/train_loop.h); rank 0's coordinator runs it.
  runtime::TrainLoopOptions loop;
  const runtime::Dataset* dataset = nullptr;  // not owned: training windows from its `train`
  // --seq_len_policy / --microbatch_tokens (validated): the training windows' lengths.
  runtime::SeqLenPolicy seq_len_policy = runtime::SeqLenPolicy::kFixed;
  int64_t microbatch_tokens = 0;
  std::string save_params;  // each rank writes its chunks to runtime::RankFile(save_params, rank)
  // Hugging Face GPT-2 weights (our names after FromHfGpt2) for a run that starts at step 0:
  // each rank loads the tensors of its own chunks. Empty: the seeded initialisation.
  std::string init_from;
  // At the end each rank writes its chunks' parameters to RankFile(export_part, rank), from
  // which the launcher writes the one --export file. Empty: none.
  std::string export_part;
  // Tracing: the file this rank writes its trace to at the end (empty: no trace). It holds
  // this rank's stages only; `trace merge` (or the launcher) joins the ranks' files.
  std::string trace;
  double hang_timeout_s = 60;
  // Held-out evaluation (runtime/train/held_out_pass.h), when the loop says: eval_batches
  // batches of the dataset's validation split.
  int eval_batches = 0;
  std::string config_text;
  // Checkpoints: each rank writes its stages' shards into the checkpoint's temporary folder,
  // rank 0 commits the manifest once every rank has (a checkpoint is complete only then).
  std::string checkpoint_dir;  // empty: none
  int keep_checkpoints = 0;
  runtime::CheckpointMeta checkpoint_meta;  // model, tokenizer, run description and history
  std::string resume_dir;                   // a verified checkpoint to start from; empty: step 0
  // Fault injection for tests (runtime/cluster/fault_plan.h): off unless STAGEHAND_FAULTS
  // is set.
  runtime::FaultPlan faults;
};

// Runs the worker until the run finishes (OK) or stops (the error says why). Leaves the
// process to the caller: on error the caller should exit without destroying actors.
absl::Status RunWorker(const WorkerOptions& options);

}  // namespace stagehand::actors::cluster

#endif  // STAGEHAND_ACTORS_CLUSTER_WORKER_NODE_H_
