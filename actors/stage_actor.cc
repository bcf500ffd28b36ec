// StageActor behaviour.
#include "actors/stage_actor.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "actors/messages.h"
#include "actors/microbatch_actor.h"
#include "runtime/action.h"

namespace stagehand::actors {
namespace {

using runtime::Action;
using runtime::ActionKind;
using Self = stage_actor::stateful_base<StageActorState>;

void Fail(Self* self, const std::string& error) {
  auto& st = self->state;
  if (st.failed) return;
  st.failed = true;
  self->send(st.init.driver, StageDone{st.init.stage,
                                       {},
                                       st.busy_seconds,
                                       absl::StrCat("stage ", st.init.stage, ": ", error),
                                       {}});
}

StageStatus Status(Self* self, int wave) {
  auto& st = self->state;
  StageStatus status;
  status.stage = st.init.stage;
  status.wave = wave;
  status.done = st.loop && st.loop->Done();
  status.blocked = !st.failed && st.loop && st.loop->Blocked();
  status.sent = st.sent;
  status.received = st.received;
  // The text is for reports only (a confirmed stall, a hang probe): not built for the wave-0
  // status a stage sends each time it blocks.
  if (st.loop && wave != 0) status.waiting = st.loop->DescribeWaiting();
  return status;
}

// Sub-step mode: launches what the stage loop says may launch, each on its lane.
void DispatchSubSteps(Self* self) {
  auto& st = self->state;
  absl::StatusOr<std::vector<runtime::SubStepOrder>> next = st.loop->NextSubSteps();
  if (!next.ok()) {
    Fail(self, std::string(next.status().message()));
    return;
  }
  for (const runtime::SubStepOrder& order : *next) {
    const Action& a = order.step.action;
    self->send(st.microbatches.at({a.chunk, a.microbatch}), run_atom::value,
               SubStepRun{a.kind, order.step.layer, order.step.part, order.index, order.count,
                          order.whole});
  }
  if (next->empty() && st.loop->Blocked()) self->send(st.init.driver, Status(self, 0));
}

// The stage's one decision point: the stage loop asks the planner if the lane is idle.
void Dispatch(Self* self) {
  auto& st = self->state;
  if (st.failed || !st.loop || st.loop->Done()) return;
  if (st.loop->sub_steps()) {
    DispatchSubSteps(self);
    return;
  }
  // Fill the lane: one action at depth 1; at depth 2 the next one it can already decide too,
  // queued behind the running one.
  while (!st.loop->lane_busy()) {
    const bool lane_idle = st.loop->running() == 0;
    absl::StatusOr<std::optional<Action>> next = st.loop->Next();
    if (!next.ok()) {
      Fail(self, std::string(next.status().message()));
      return;
    }
    if (!next->has_value()) {
      // Blocked: the driver checks for stalls. Not while an action runs (it will finish).
      if (lane_idle) self->send(st.init.driver, Status(self, 0));
      return;
    }
    const Action& action = **next;
    // Only an action that starts on an idle lane can have waited for its input.
    if (lane_idle) {
      st.transfer_waits.Started(action.kind != ActionKind::kBackwardWeight,
                                action.kind != ActionKind::kForward, action.chunk,
                                action.microbatch, runtime::trace::NowNanos());
    }
    self->send(st.microbatches.at({action.chunk, action.microbatch}), run_atom::value, action.kind,
               st.lane_tickets++);
  }
}

// Once the step's compute and (data parallelism) every REDUCE_GRAD and the loss stage's
// gathering of every replica's losses finished: StageDone.
void MaybeSendDone(Self* self) {
  auto& st = self->state;
  if (st.failed || st.done_sent || !st.loop || !st.loop->Done()) return;
  if (st.reduction && !st.reduction->AllReduced()) return;
  if (st.reduction && runtime::LossStage(st.spec) == st.init.stage && !st.losses_gathered) {
    return;
  }
  st.done_sent = true;
  st.phase_seconds[4] = st.transfer_waits.seconds();
  StageDone done{st.init.stage, st.losses, st.busy_seconds, "", st.phase_seconds, {}};
  done.non_finite_losses = SendableDoubles(done.losses);
  self->send(st.init.driver, std::move(done));
}

// Data parallelism, the loss stage: once its compute finished (every bucket already queued
// before it on the reduction lane), every replica's losses, so that every replica's driver
// checks and reports the step's D x M losses alike.
void PostGatherLosses(Self* self) {
  auto& st = self->state;
  st.init.reduce_lane->Post([me = caf::actor_cast<stage_actor>(self), work = st.init.work,
                             losses = st.losses]() mutable {
    const absl::Status status = work->GatherLosses(&losses);
    caf::anon_send(
        me, LossesGathered{std::move(losses), status.ok() ? "" : std::string(status.message())});
  });
}

void OnLossesGathered(Self* self, LossesGathered& gathered) {
  auto& st = self->state;
  if (st.failed) return;
  if (!gathered.error.empty()) {
    Fail(self, absl::StrCat("gathering the replicas' losses failed: ", gathered.error));
    return;
  }
  st.losses = std::move(gathered.losses);
  st.losses_gathered = true;
  MaybeSendDone(self);
}

// REDUCE_GRAD of bucket `index` on the stage's reduction lane (traced on its communication
// lane); the lane reports back with GradReduced.
void PostReduceGrad(Self* self, int index) {
  auto& st = self->state;
  const runtime::GradBucket bucket = st.buckets[index];
  runtime::trace::TraceRecorder::SendLane* trace =
      st.init.trace ? st.init.trace->reduce(st.init.stage) : nullptr;
  st.init.reduce_lane->Post(
      [me = caf::actor_cast<stage_actor>(self), work = st.init.work, bucket, index, trace] {
        const int64_t begin = runtime::trace::NowNanos();
        const absl::Status status = work->ReduceGradients(bucket);
        const int64_t end = runtime::trace::NowNanos();
        if (trace) {
          trace->Record(ActionKind::kReduceGrad, -1, bucket.chunk, index,
                        (bucket.end - bucket.begin) * int64_t{sizeof(float)}, begin, end);
        }
        caf::anon_send(me, GradReduced{index, (end - begin) / 1e9,
                                       status.ok() ? "" : std::string(status.message())});
      });
}

void OnReduced(Self* self, const GradReduced& reduced) {
  auto& st = self->state;
  if (st.failed || !st.reduction) return;
  if (!reduced.error.empty()) {
    Fail(self, absl::StrCat("REDUCE_GRAD bucket ", reduced.bucket, " failed: ", reduced.error));
    return;
  }
  st.reduction->OnReduced(reduced.bucket);
  MaybeSendDone(self);
}

// Part of the step's last W / B of a chunk finished: the buckets of the layers it completed.
void OnPartsDone(Self* self, const GradPartsDone& done) {
  auto& st = self->state;
  if (st.failed || !st.reduction) return;
  for (int bucket : st.reduction->OnPartsFinished(done.chunk, done.parts)) {
    PostReduceGrad(self, bucket);
  }
}

// The consumer's action kind of a transfer: F for an activation, I (or B) for a gradient.
ActionKind ConsumerKind(const runtime::Transfer& t) {
  return t.kind == ActionKind::kSendForward ? ActionKind::kForward : ActionKind::kBackwardInput;
}

// The timers' phase of a compute action: forward, backward-input (I and fused B), or
// backward-weight (runtime/train/timers.h).
int PhaseIndex(ActionKind kind) {
  return kind == ActionKind::kForward ? 0 : kind == ActionKind::kBackwardWeight ? 2 : 1;
}

void AfterActionFinished(Self* self, const Action& action, double loss,
                         const runtime::FinishedOutputs& finished);

// The trace's memory counter after `action`, with the work's device memory where it has one.
template <typename State>
void TraceFinished(const State& st, const Action& action) {
  int64_t in_use = -1, peak = -1;
  if (!st.init.work->DeviceMemory(&in_use, &peak)) in_use = peak = -1;
  st.init.trace->stage(st.init.stage)->ComputeFinished(action, runtime::trace::NowNanos(), in_use,
                                                      peak);
}

void OnFinished(Self* self, const ComputeDone& done) {
  auto& st = self->state;
  st.busy_seconds += done.seconds;
  st.phase_seconds[PhaseIndex(done.kind)] += done.seconds;
  st.phase_seconds[3] += done.data_seconds;
  st.transfer_waits.LaneFreed(done.end_ns);
  Action action{st.init.stage, done.kind, done.chunk, done.microbatch};
  if (st.init.trace)
    TraceFinished(st, action);
  if (!done.error.empty()) {
    Fail(self, absl::StrCat(runtime::ActionToString(action), " failed: ", done.error));
    return;
  }
  absl::StatusOr<runtime::FinishedOutputs> outputs = st.loop->Finished(action);
  if (!outputs.ok()) {
    Fail(self, std::string(outputs.status().message()));
    return;
  }
  AfterActionFinished(self, action, done.loss, *outputs);
}

// A sub-step finished on its lane; its action's last one finishes the action.
void OnSubStepFinished(Self* self, const SubStepDone& finished) {
  auto& st = self->state;
  const ComputeDone& done = finished.done;
  const SubStepRun& run = finished.run;
  const runtime::SubStepOrder order{
      runtime::SubStep{Action{st.init.stage, done.kind, done.chunk, done.microbatch}, run.layer,
                       run.part},
      run.index, run.count, run.whole};
  if (order.lane() == runtime::SubStepLane::kCompute) {
    st.busy_seconds += done.seconds;
    st.phase_seconds[PhaseIndex(done.kind)] += done.seconds;
  }
  st.phase_seconds[3] += done.data_seconds;
  if (st.failed) return;
  if (!done.error.empty()) {
    Fail(self, absl::StrCat(runtime::SubStepOrderToString(order), " failed: ", done.error));
    return;
  }
  absl::StatusOr<std::optional<runtime::FinishedOutputs>> outputs = st.loop->SubStepFinished(order);
  if (!outputs.ok()) {
    Fail(self, std::string(outputs.status().message()));
    return;
  }
  if (!outputs->has_value()) {
    Dispatch(self);
    return;
  }
  const Action& action = order.step.action;
  if (st.init.trace)
    TraceFinished(st, action);
  AfterActionFinished(self, action, done.loss, **outputs);
}

// What follows a finished compute action: its loss, its outputs shipped, buckets reduced, the
// step's end or the next decision.
void AfterActionFinished(Self* self, const Action& action, double loss,
                         const runtime::FinishedOutputs& finished) {
  auto& st = self->state;
  const runtime::FinishedOutputs* outputs = &finished;
  if (action.kind == ActionKind::kForward && runtime::HoldsLoss(st.spec, action.chunk)) {
    st.losses[action.microbatch] = loss;
  }
  const microbatch_actor& producer = st.microbatches.at({action.chunk, action.microbatch});
  for (const runtime::Transfer& t : outputs->remote) {
    ++st.sent;
    self->send(producer, ship_atom::value, ShipOrder{ConsumerKind(t), t.to_stage, t.chunk, false});
  }
  // Outputs for a neighbour chunk on this same stage: the payload still has to move to that
  // chunk's microbatch actor; the stage loop holds the consumer back until it lands.
  for (const runtime::Transfer& t : outputs->local) {
    self->send(producer, ship_atom::value, ShipOrder{ConsumerKind(t), t.to_stage, t.chunk, true});
  }
  if (st.reduction) {
    for (int bucket : st.reduction->OnComputeFinished(action.kind, action.chunk)) {
      PostReduceGrad(self, bucket);
    }
  }
  if (st.loop->Done()) {
    self->send(st.init.driver, Status(self, 0));  // final counters, for stall detection
    if (st.reduction && runtime::LossStage(st.spec) == st.init.stage) PostGatherLosses(self);
    MaybeSendDone(self);
    return;
  }
  Dispatch(self);
}

void OnInput(Self* self, TensorMessage& msg) {
  auto& st = self->state;
  if (st.failed) return;
  if (!st.loop || st.loop->Done()) {
    // No step in progress, so this input is the next step's: its start comes from the driver
    // (or the stage's gate) and the input from a transfer lane, and CAF orders messages per
    // sender only, so the input may overtake the start. A finished step takes no input.
    st.next_step_inputs.push_back(std::move(msg));
    return;
  }
  auto it = st.microbatches.find({msg.chunk, msg.microbatch});
  if (msg.to_stage != st.init.stage || it == st.microbatches.end()) {
    Fail(self,
         absl::StrCat("received a tensor for chunk ", msg.chunk, " microbatch ", msg.microbatch,
                      " from stage ", msg.from_stage, ", which this stage does not hold"));
    return;
  }
  runtime::Transfer t{
      msg.kind == ActionKind::kForward ? ActionKind::kSendForward : ActionKind::kSendBackward,
      msg.from_stage, msg.to_stage, msg.chunk, msg.microbatch};
  absl::Status arrived;
  if (!msg.local) {
    ++st.received;
    const int64_t now = runtime::trace::NowNanos();
    if (st.init.trace) {
      st.init.trace->stage(st.init.stage)
          ->InputArrived(t, static_cast<int64_t>(msg.payload.size() * sizeof(float)), now);
    }
    st.transfer_waits.InputArrived(msg.kind != ActionKind::kForward, msg.chunk, msg.microbatch,
                                   msg.handed_off_ns > 0 ? msg.handed_off_ns : now, now);
    arrived = st.loop->InputArrived(t);
  } else {
    arrived = st.loop->HandOffArrived(t);
  }
  if (!arrived.ok()) {
    Fail(self, std::string(arrived.message()));
    return;
  }
  self->send(it->second, std::move(msg));  // before any run order for it: CAF keeps order
  Dispatch(self);
}

// Runs an optimizer phase on the stage's lane (traced as OPTIM when tracing) and sends the
// driver the message the phase returns.
template <typename Phase>
void PostOptimizerPhase(Self* self, Phase phase) {
  auto& st = self->state;
  runtime::trace::TraceRecorder::ComputeLane* trace =
      st.init.trace ? st.init.trace->compute(st.init.stage) : nullptr;
  st.init.lane->Post([trace, driver = st.init.driver, phase = std::move(phase)]() mutable {
    const int64_t begin = runtime::trace::NowNanos();
    auto message = phase();
    const int64_t end = runtime::trace::NowNanos();
    message.seconds = 1e-9 * static_cast<double>(end - begin);  // the optimizer timer
    if (trace) trace->Record(ActionKind::kOptimizer, 0, 0, begin, end);
    caf::anon_send(driver, std::move(message));
  });
}

// Begins (or, for a rerun, begins again) step `step`: a fresh stage loop and planner.
void StartStep(Self* self, int64_t step) {
  auto& st = self->state;
  st.step = step;
  st.failed = false;
  st.done_sent = false;
  st.losses_gathered = false;
  if (!st.bucket_error.empty()) {
    Fail(self, st.bucket_error);
    return;
  }
  st.sent = st.received = 0;
  st.busy_seconds = 0.0;
  st.phase_seconds.assign(5, 0.0);
  st.transfer_waits.StepStarted(runtime::trace::NowNanos());
  st.loop.reset();  // it may point into st.spec
  st.spec = st.init.specs ? st.init.specs->ForStep(step) : st.init.spec;
  st.losses.assign(st.spec.num_microbatches, 0.0);
  if (st.init.reduce_lane != nullptr) {
    st.reduction = std::make_unique<runtime::GradReductionTracker>(
        st.buckets, st.spec.num_microbatches, st.init.reduction_start);
  }
  absl::StatusOr<runtime::StageLoop> loop = runtime::StageLoop::Create(
      st.spec, st.init.stage, st.init.planner->MakePlanner(st.spec, st.init.stage));
  if (!loop.ok()) {
    st.loop.reset();
    Fail(self, std::string(loop.status().message()));
    return;
  }
  st.loop = std::make_unique<runtime::StageLoop>(*std::move(loop));
  if (!st.init.sub_steps.empty()) {
    if (absl::Status s = st.loop->EnableSubSteps(st.init.sub_steps); !s.ok()) {
      Fail(self, std::string(s.message()));
      return;
    }
    if (st.init.ordered_communication) st.loop->OrderCommunication();
  } else if (absl::Status s = st.loop->SetLaneDepth(st.init.lane_depth); !s.ok()) {
    Fail(self, std::string(s.message()));
    return;
  }
  runtime::StageWork* work = st.init.work;
  st.init.lane->Post([work, step, m = st.spec.num_microbatches] { work->BeginStep(step, m); });
  std::vector<TensorMessage> early = std::move(st.next_step_inputs);
  st.next_step_inputs.clear();
  for (TensorMessage& msg : early) OnInput(self, msg);
  Dispatch(self);
}

// Per-layer REDUCE_GRAD: buckets (cut at the parts' boundaries) ordered by the parts of the
// weight-gradient pass that complete them, and the lane's reports of those parts sent here as
// GradPartsDone.
void EnableLayerReduction(Self* self, const runtime::GradPartLayout& parts) {
  auto& st = self->state;
  if (parts.empty()) return;
  st.buckets = runtime::OrderBucketsByParts(std::move(st.buckets), parts);
  st.init.work->SetGradientProgress([me = caf::actor_cast<stage_actor>(self)](int chunk, int n) {
    caf::anon_send(me, GradPartsDone{chunk, n});
  });
}

// The stage's gradient buckets (a bad --grad_bucket_mb kept as the error every step reports).
void PlanBuckets(Self* self) {
  auto& st = self->state;
  const bool per_layer = st.init.reduction_start == runtime::GradReductionStart::kAsLayersComplete;
  const runtime::GradPartLayout parts =
      per_layer ? st.init.work->GradientParts() : runtime::GradPartLayout{};
  absl::StatusOr<std::vector<runtime::GradBucket>> buckets =
      runtime::PlanGradBuckets(st.init.work->GradientFloats(), st.init.grad_bucket_mb, parts);
  if (!buckets.ok()) {
    st.bucket_error = std::string(buckets.status().message());
    return;
  }
  st.buckets = *std::move(buckets);
  EnableLayerReduction(self, parts);
}

}  // namespace

stage_actor::behavior_type StageActor(Self* self, StageActorInit init) {
  self->state.init = std::move(init);
  auto& st = self->state;
  for (int c = 0; c < st.init.spec.num_chunks; ++c) {
    if (st.init.spec.chunk_to_stage[c] != st.init.stage) continue;
    for (int mb = 0; mb < st.init.spec.num_microbatches; ++mb) {
      MicrobatchActorInit mi{st.init.stage,
                             c,
                             mb,
                             caf::actor_cast<stage_actor>(self),
                             st.init.comm,
                             st.init.lane,
                             st.init.work,
                             st.init.trace ? st.init.trace->compute(st.init.stage) : nullptr};
      mi.comm_lane = st.init.sub_step_lane;
      if (st.init.trace) mi.a2a_trace = st.init.trace->all_to_all(st.init.stage);
      st.microbatches[{c, mb}] = self->spawn(MicrobatchActor, mi);
    }
  }
  if (st.init.reduce_lane != nullptr) PlanBuckets(self);
  return {
      [=](start_atom, int64_t step) { StartStep(self, step); },
      // The same step again with the same data: the rerun state machine's rerun.
      [=](rerun_atom, int64_t step) { StartStep(self, step); },
      [=](TensorMessage& msg) { OnInput(self, msg); },
      [=](const ComputeDone& done) { OnFinished(self, done); },
      [=](const SubStepDone& done) { OnSubStepFinished(self, done); },
      [=](const GradReduced& reduced) { OnReduced(self, reduced); },
      [=](const GradPartsDone& done) { OnPartsDone(self, done); },
      [=](LossesGathered& gathered) { OnLossesGathered(self, gathered); },
      [=](probe_atom, int wave) { self->send(self->state.init.driver, Status(self, wave)); },
      // Optimizer phases run on the lane, after every compute action of the step.
      [=](tied_atom) {
        auto& st = self->state;
        PostOptimizerPhase(self, [work = st.init.work, stage = st.init.stage] {
          return TiedGradients{stage, work->TiedGradients()};
        });
      },
      [=](tied_atom, const TiedGradients& sums) {
        auto& st = self->state;
        PostOptimizerPhase(self, [work = st.init.work, stage = st.init.stage, sums] {
          work->SetTiedGradients(sums.grads);
          SquaredNorms norms{stage, work->SquaredNorms(), work->GradientNames()};
          for (auto& [chunk, values] : norms.norms)
            norms.non_finite[chunk] = SendableDoubles(values);
          return norms;
        });
      },
      [=](optim_atom, double scale, int step) {
        auto& st = self->state;
        PostOptimizerPhase(self, [work = st.init.work, stage = st.init.stage, scale, step] {
          work->ApplyOptimizer(scale, step);
          return OptimizerDone{stage};
        });
      },
      [=](discard_atom) {
        auto& st = self->state;
        PostOptimizerPhase(self, [work = st.init.work, stage = st.init.stage] {
          work->DiscardGradients();
          return GradientsDiscarded{stage};
        });
      },
  };
}

}  // namespace stagehand::actors
