// StageActor: one per pipeline stage. Owns the stage's loop (runtime/stage_loop.h: step
// bookkeeping and planner), its compute lane and its microbatch actors; on every event it
// lets the stage loop pick the next compute action and hands it to that microbatch's actor.
// Thin: what runs next is the planner's decision, what follows from it is the stage loop's.
#ifndef STAGEHAND_ACTORS_STAGE_ACTOR_H_
#define STAGEHAND_ACTORS_STAGE_ACTOR_H_

#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "actors/interfaces.h"
#include "actors/lane.h"
#include "caf/all.hpp"
#include "runtime/planner.h"
#include "runtime/stage_loop.h"
#include "runtime/step_spec.h"
#include "runtime/trace/recorder.h"
#include "runtime/train/grad_buckets.h"
#include "runtime/train/stage_work.h"
#include "runtime/train/step_specs.h"
#include "runtime/train/timers.h"

namespace stagehand::actors {

struct StageActorInit {
  int stage = 0;
  runtime::StepSpec spec;  // the full M's (microbatch actors are spawned for its M)
  const runtime::PlannerDefinition* planner = nullptr;
  Lane* lane = nullptr;
  runtime::StageWork* work = nullptr;
  stage_reports driver;  // the StepDriver, or (cluster) what stands in front of it
  tensor_inbox comm;     // the stage's outgoing transfer lane
  runtime::trace::TraceRecorder* trace = nullptr;  // may be null
  // Each step's spec (a batch-size ramp-up's M changes; the same stages and chunks); null:
  // `spec` for every step.
  std::shared_ptr<const runtime::StepSpecs> specs;
  // Data parallelism: the stage's reduction lane (its communication lane for REDUCE_GRAD),
  // null without data parallelism; and the bucket size (--grad_bucket_mb).
  Lane* reduce_lane = nullptr;
  double grad_bucket_mb = runtime::kDefaultGradBucketMb;
  runtime::GradReductionStart reduction_start = runtime::GradReductionStart::kAsLayersComplete;
  // Fine-grained callables: the layers of the chunks held here, whose MoE actions then run as
  // sub-steps (runtime/sub_step_graph.h), and the communication lane of their dispatch and
  // combine; empty / null: whole actions.
  runtime::SubStepLayout sub_steps;
  Lane* sub_step_lane = nullptr;
  // Expert parallelism: communication sub-steps in an order fixed by the plan
  // (runtime::StageLoop::OrderCommunication).
  bool ordered_communication = false;
  // Whole actions the compute lane may hold (runtime::StageLoop::SetLaneDepth): 2 queues the
  // next decidable action behind the running one.
  int lane_depth = 1;
};

struct StageActorState {
  StageActorInit init;
  std::map<std::pair<int, int>, microbatch_actor> microbatches;  // (chunk, mb) -> actor
  runtime::StepSpec spec;                                        // this step's (its M)
  std::unique_ptr<runtime::StageLoop> loop;  // this step's; null before the first start
  uint64_t lane_tickets = 0;  // compute actions sent to the lane so far (Lane::PostInOrder)
  // Inputs that arrived between steps (before the first start, or after this step's last
  // action): they belong to the next step, whose start has not arrived yet. Delivered right
  // after that start.
  std::vector<TensorMessage> next_step_inputs;
  int64_t step = 0;
  bool failed = false;
  int64_t sent = 0, received = 0;
  std::vector<double> losses;
  double busy_seconds = 0.0;
  std::vector<double> phase_seconds;  // this run: forward, backward-input, backward-weight, data
  runtime::TransferWaitClock transfer_waits;  // this run's transfers exposed (--log_timers)
  // Data parallelism: the stage's buckets (planned once) and this step's REDUCE_GRAD
  // bookkeeping; StageDone waits for the step's compute and every bucket.
  std::vector<runtime::GradBucket> buckets;
  std::unique_ptr<runtime::GradReductionTracker> reduction;
  bool done_sent = false;
  bool losses_gathered = false;
  std::string bucket_error;  // PlanGradBuckets' refusal, reported at the first step  // the loss
                             // stage's GatherLosses, after its last bucket
};

stage_actor::behavior_type StageActor(stage_actor::stateful_pointer<StageActorState> self,
                                      StageActorInit init);

}  // namespace stagehand::actors

#endif  // STAGEHAND_ACTORS_STAGE_ACTOR_H_
