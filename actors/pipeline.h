// Pipeline: the actor runtime of one process. Spawns a StepDriver, one StageActor (with
// its lane, transfer lane and microbatch actors) per stage, and runs training steps on
// them; with data parallelism, one such set per replica (`--dp=D` as actors), each stage
// with a reduction lane for its REDUCE_GRAD actions. Not a trainer: data, model, optimizer
// and the replicas' collectives live in the StageWork it is given.
#ifndef STAGEHAND_ACTORS_PIPELINE_H_
#define STAGEHAND_ACTORS_PIPELINE_H_

#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "actors/comm_actor.h"
#include "actors/interfaces.h"
#include "actors/lane.h"
#include "actors/messages.h"
#include "caf/all.hpp"
#include "runtime/collectives/in_process_collective.h"
#include "runtime/planner.h"
#include "runtime/step_spec.h"
#include "runtime/trace/recorder.h"
#include "runtime/train/grad_buckets.h"
#include "runtime/train/rerun.h"
#include "runtime/train/stage_work.h"
#include "runtime/train/step_specs.h"

namespace stagehand::actors {

struct PipelineOptions {
  const runtime::PlannerDefinition* planner = nullptr;
  runtime::StepSpec spec;  // from planner->MakeSpec (the full M's under a ramp-up)
  // Each step's spec under a batch-size ramp-up (runtime/train/step_specs.h); null: `spec`.
  std::shared_ptr<const runtime::StepSpecs> specs;
  LinkModel link;
  double grad_clip = 1.0;
  runtime::RerunOptions rerun;  // the step driver's checks before the optimizer
  // Deterministic mode for tests: CAF's test coordinator runs messages one at a time when
  // the test says so, and lanes run jobs inline. RunStep is not available then.
  bool deterministic = false;
  int scheduler_threads = 2;
  // > 0: each lane's OpenMP team size (Lane), so that lanes sharing few cores do not each open
  // a team as wide as the machine; 0: OpenMP's default. Results do not depend on it.
  int lane_omp_threads = 0;
  // Whole actions each stage's compute lane may hold (runtime::StageLoop::SetLaneDepth): 2
  // queues the next action a stage can already decide behind the running one, so that the
  // actor round trip between two actions hides under compute. Results do not depend on it.
  // Deterministic mode runs at 1.
  int lane_depth = 1;
  // Not owned, may be null: records every actor event (compute, transfers, memory, steps).
  // With replicas, replica 0's events.
  runtime::trace::TraceRecorder* trace = nullptr;
  // Data parallelism: replicas of the pipeline (each with its own driver and stages; their
  // stage works sum gradients over their groups), the bucket size of REDUCE_GRAD, and the
  // groups (not owned) to abort when a replica fails, so that no replica waits forever.
  int replicas = 1;
  double grad_bucket_mb = runtime::kDefaultGradBucketMb;
  runtime::GradReductionStart reduction_start = runtime::GradReductionStart::kAsLayersComplete;
  std::vector<runtime::InProcessGroup*> groups;
  // Expert parallelism (--ep): each stage's dispatch / combine sub-steps run in an order fixed
  // by the plan (runtime::StageLoop::OrderCommunication), as the members' all-to-alls must
  // meet in the same order.
  bool ordered_communication = false;
  // Called after each step that succeeded, every replica's optimizer done, before RunStep
  // returns (not in its seconds); null: none. --ep's whole model is gathered there.
  std::function<void()> after_step;
  // --moe_sub_steps: MoE actions as sub-steps whatever the planner (RunsSubSteps).
  bool moe_sub_steps = false;
};

// Whether stage work `work` runs its MoE actions as sub-steps under `planner`: the planner
// overlaps sub-steps (PlannerDefinition::OverlapsSubSteps) or `always` (--moe_sub_steps), and
// a chunk held has an MoE layer.
bool RunsSubSteps(const runtime::PlannerDefinition& planner, const runtime::StageWork& work,
                  bool always = false);

class Pipeline {
 public:
  // One StageWork per stage and replica, replica-major (work of stage s in replica d at
  // d * P + s).
  static absl::StatusOr<std::unique_ptr<Pipeline>> Create(
      const PipelineOptions& options, std::vector<std::unique_ptr<runtime::StageWork>> works);
  ~Pipeline();

  // Runs step `step` (1-based) to completion: every compute action, then the optimizer.
  // An error (a stall, a failed action, a planner breaking the memory cap) names the
  // stage and what it waits for; the pipeline cannot run further steps after one.
  // With replicas: every replica runs the step; the loss is the mean over the step's D x M
  // microbatches (the loss stages gather every replica's losses before the optimizer).
  absl::StatusOr<StepOutcome> RunStep(int64_t step);
  // Runs `job` on every stage work of every replica, each on its stage's lane, all at once
  // (ZeRO-1's exchanges meet across replicas), and waits for them: between steps only. The
  // first error, naming replica and stage. Not in deterministic mode.
  absl::Status OnEveryStage(const std::function<absl::Status(runtime::StageWork&)>& job);
  // Replica 0's stage `stage`'s optimizer-state bytes (StageWork::OptimizerStateBytes), read
  // on its lane: between steps only.
  absl::StatusOr<int64_t> OptimizerStateBytes(int stage);
  // The applied steps' losses of a resumed run, for the rerun state machine's spike check.
  void SeedLossHistory(const std::vector<double>& losses);

  caf::actor_system& system() { return *system_; }
  const step_driver_actor& driver() const { return drivers_.front(); }
  // Every replica's stages, replica-major.
  const std::vector<stage_actor>& stages() const { return stages_; }
  const runtime::StepSpec& spec() const { return options_.spec; }

 private:
  Pipeline(const PipelineOptions& options, std::vector<std::unique_ptr<runtime::StageWork>> works);
  void SpawnReplica(int replica);
  // Runs the step on replica `replica`'s driver.
  StepOutcome RunReplicaStep(int replica, int64_t step);
  PipelineOptions options_;
  std::vector<std::unique_ptr<runtime::StageWork>> works_;
  std::vector<std::unique_ptr<Lane>> lanes_;
  std::unique_ptr<caf::actor_system_config> config_;
  std::unique_ptr<caf::actor_system> system_;
  std::vector<std::unique_ptr<Lane>> reduce_lanes_;
  std::vector<std::unique_ptr<Lane>> sub_step_lanes_;  // stages that run sub-steps
  std::vector<step_driver_actor> drivers_;
  std::vector<stage_actor> stages_;
  std::vector<comm_actor> comms_;
  bool broken_ = false;
};

}  // namespace stagehand::actors

#endif  // STAGEHAND_ACTORS_PIPELINE_H_
