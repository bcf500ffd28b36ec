// ModelPipeline: the GPT model cut for a planner's step (chunks placed on stages as the
// planner says) and the actor Pipeline that trains it. Not a launcher: flags and printing
// stay in tools/launch.
#ifndef STAGEHAND_ACTORS_MODEL_PIPELINE_H_
#define STAGEHAND_ACTORS_MODEL_PIPELINE_H_

#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "actors/pipeline.h"
#include "models/gpt_config.h"
#include "runtime/collectives/collective_expert_exchange.h"
#include "runtime/planner.h"
#include "runtime/train/slow_stage_work.h"
#include "runtime/train/stage_work.h"
#include "runtime/train/step_specs.h"
#include "runtime/train/training.h"

namespace stagehand::actors {

struct ModelPipelineOptions {
  models::GptConfig model;
  models::ChunkOptions chunk;  // num_microbatches = the planner's M
  std::string partition;       // --partition (runtime::CutModel)
  const runtime::PlannerDefinition* planner = nullptr;
  runtime::PlannerOptions planner_options;  // P, M, max_inflight
  runtime::OptimizerConfig optimizer;
  LinkModel link;
  bool deterministic = false;
  int lane_omp_threads = 0;                    // PipelineOptions::lane_omp_threads
  int lane_depth = 1;                          // PipelineOptions::lane_depth
  runtime::RerunOptions rerun;                 // checks before the optimizer
  std::map<int, runtime::StageFaults> faults;  // test faults by stage (STAGEHAND_FAULTS)
  // Not owned, may be null: records every actor event; also told each chunk's activation
  // bytes per microbatch, for its memory counter.
  runtime::trace::TraceRecorder* trace = nullptr;
  // --slow_stage: that stage's compute stretched (runtime/train/slow_stage_work.h).
  runtime::SlowStage slow_stage;
  // --dp: replicas of the pipeline, as actors of this process. Replica d draws the step's
  // global microbatches d * M .. d * M + M - 1 (M = planner_options.num_microbatches), so the
  // step trains on D x M microbatches and its loss is their mean: `sampler` must be built for
  // D x M microbatches a step. Gradients are summed over the replicas in replica order
  // (runtime/collectives/collective.h) in buckets of --grad_bucket_mb.
  int dp = 1;
  double grad_bucket_mb = runtime::kDefaultGradBucketMb;
  // --zero=1 (dp > 1): ZeRO-1, AdamW moments sharded over each stage's replicas
  // (runtime::DataParallelPlace). 0: every replica holds all of them.
  int zero = 0;
  // --ep (divides dp; the model must have MoE layers, each with a multiple of ep experts):
  // expert parallelism inside each stage's replicas, groups carved out of dp as the rank grid
  // does (runtime/grid/rank_grid.h, dp split into ep x edp, ep fastest: replicas d with the
  // same d / ep form an expert-parallel group). Each member computes E / ep experts of every
  // MoE layer on the rows of the whole group (models/expert_exchange.h), and holds only those
  // experts (models::ExpertShard): their gradients are summed over the replicas holding the
  // same experts (edp), the rest over dp. Not with zero = 1 (refused).
  int ep = 1;
  // --moe_sub_steps: MoE actions as sub-steps under any planner (actors::RunsSubSteps).
  bool moe_sub_steps = false;
  // Builds each stage's work in place of a runtime::ModelStageWork over the same host chunks
  // (--device=cuda: runtime/train/cuda_stage_work.h); null: the CPU's. Called for every
  // replica's every stage (replica-major), without --slow_stage or test faults (refused).
  struct StageWorkSpec {
    int stage = 0;
    std::map<int, runtime::Chunk*> held;  // this replica's chunks on the stage
    int num_chunks = 0;
    const runtime::WindowSampler* sampler = nullptr;
    int num_microbatches = 0;  // a replica's M
    runtime::OptimizerConfig optimizer;
    runtime::DataParallelPlace place;  // --dp: the replica's seat and its stage's group
  };
  using StageWorkFactory =
      std::function<absl::StatusOr<std::unique_ptr<runtime::StageWork>>(const StageWorkSpec&)>;
  StageWorkFactory stage_work;
  // When buckets go out (the overlap benchmark's baseline holds them to the backward's end).
  runtime::GradReductionStart reduction_start = runtime::GradReductionStart::kAsLayersComplete;
  // --rampup_batch_size: each step's spec (its M); null: planner_options' M every step. Its
  // full spec is planner_options' (the chunks hold that many microbatches).
  std::shared_ptr<const runtime::StepSpecs> specs;
};

struct ModelPipeline {
  // Replica 0's chunks, every chunk in model order: what evaluation, checkpoints and exports
  // read (every replica holds the same parameters after each step). With --ep > 1 (expert_view)
  // a replica holds only its member's experts, so `chunks` is instead a whole model that no
  // stage trains, and `states` its moments: after each step the pipeline fills its values from
  // the replicas (each expert from a replica of edp group 0 holding it; dense tensors are the
  // same on all), WithFullOptimizerState its moments, and SyncReplicas sets the replicas from
  // it.
  std::vector<std::unique_ptr<runtime::Chunk>> chunks;
  bool expert_view = false;
  // Data parallelism: the collectives of each stage's replicas (one group per stage), and
  // replicas 1 .. D-1's chunks and AdamW moments. Declared before the pipeline, which uses
  // them until it is destroyed.
  std::vector<runtime::InProcessGroupMembers> groups;
  // With expert_view: every replica's chunks and moments, replica 0's included.
  std::vector<std::vector<std::unique_ptr<runtime::Chunk>>> replica_chunks;
  // Expert parallelism: one group per (stage, edp) and each (replica, stage)'s exchange over
  // its member, replica-major; set on that replica's chunks of the stage. One expert-data-
  // parallel group per (stage, ep member) when edp > 1: its experts' gradient sums.
  std::vector<runtime::InProcessGroupMembers> expert_groups;
  std::vector<runtime::InProcessGroupMembers> expert_data_groups;
  std::vector<std::unique_ptr<runtime::CollectiveExpertExchange>> expert_exchanges;
  std::vector<std::unique_ptr<std::vector<runtime::OptimizerState>>> replica_states;
  std::vector<runtime::OptimizerState>* states = nullptr;  // replica 0's (options), may be null
  std::unique_ptr<Pipeline> pipeline;
  std::vector<runtime::Chunk*> chunk_pointers() const;
  // Replica d's chunks (d in [0, dp)), in model order: the ones its stages train.
  std::vector<runtime::Chunk*> ReplicaChunks(int d) const;
  // Copies replica 0's parameters (and, when the options gave `optimizer.states`, its AdamW
  // moments) to every other replica: after weights were restored or imported into `chunks`.
  // With expert_view, sets every replica's tensors (and moments, when `states` holds some)
  // from `chunks`, each replica those it holds.
  void SyncReplicas();
  // Runs `use` with `states` holding every chunk's full AdamW moments (ZeRO-1 gathers them
  // from the replicas' shards first, and drops them after; expert_view gathers them from the
  // replicas and drops them after): what a checkpoint writes.
  absl::Status WithFullOptimizerState(const std::function<absl::Status()>& use);
};

// --ep against --dp and the model: ep >= 1; ep > 1 divides dp and every MoE layer's experts,
// and needs an MoE layer. InvalidArgument naming the flag otherwise.
absl::Status ValidateExpertParallelism(const models::GptConfig& model, int dp, int ep);

// Builds the chunks of `options.planner`'s step and the pipeline over them. `sampler`
// must outlive the result.
absl::StatusOr<ModelPipeline> BuildModelPipeline(const ModelPipelineOptions& options,
                                                 const runtime::WindowSampler* sampler);

// A pipeline over `chunks` (the whole model in order, as a ModelPipeline holds it) for
// `options.planner_options`'s M. The chunks must hold at least that many microbatches and
// match the plan's chunk count.
absl::StatusOr<std::unique_ptr<Pipeline>> BuildPipelineOn(
    const ModelPipelineOptions& options, const runtime::WindowSampler* sampler,
    const std::vector<runtime::Chunk*>& chunks);

// A pipeline whose stages run SyntheticStageWork (known durations, no model): for overlap
// tests and runtime-overhead benchmarks.
absl::StatusOr<std::unique_ptr<Pipeline>> BuildSyntheticPipeline(
    const runtime::PlannerDefinition* planner, const runtime::PlannerOptions& planner_options,
    const runtime::SyntheticDurations& durations, const LinkModel& link, bool deterministic,
    runtime::trace::TraceRecorder* trace = nullptr, int lane_depth = 1);

}  // namespace stagehand::actors

#endif  // STAGEHAND_ACTORS_MODEL_PIPELINE_H_
