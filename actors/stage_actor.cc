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
using Self = caf::stateful_actor<StageActorState>;

void Fail(Self* self, const std::string& error) {
  auto& st = self->state;
  if (st.failed) return;
  st.failed = true;
  self->send(st.init.driver, StageDone{st.init.stage, {}, st.busy_seconds, absl::StrCat("stage ", st.init.stage, ": ", error)});
}

StageStatus Status(Self* self, int wave) {
  auto& st = self->state;
  StageStatus status;
  status.stage = st.init.stage;
  status.wave = wave;
  status.done = st.graph && st.graph->Done();
  status.blocked = !st.failed && !st.lane_busy && !status.done && st.local_in_flight.empty();
  status.sent = st.sent;
  status.received = st.received;
  // The text is for reports only (a confirmed stall, a hang probe): not built for the wave-0
  // status a stage sends each time it blocks.
  if (st.graph && wave != 0) status.waiting = st.graph->DescribeWaiting();
  return status;
}

// The stage's one decision point: if the lane is idle, ask the planner.
void Dispatch(Self* self) {
  auto& st = self->state;
  if (st.failed || st.lane_busy || !st.graph || st.graph->Done()) return;
  std::vector<Action> ready = st.graph->Ready();
  ready.erase(std::remove_if(ready.begin(), ready.end(),
                             [&](const Action& a) {
                               const int input = a.kind == ActionKind::kForward
                                                     ? static_cast<int>(ActionKind::kForward)
                                                     : static_cast<int>(ActionKind::kBackwardInput);
                               return a.kind != ActionKind::kBackwardWeight &&
                                      st.local_in_flight.count({input, a.chunk, a.microbatch}) > 0;
                             }),
              ready.end());
  std::optional<Action> next = st.planner->Next(ready, *st.graph);
  if (!next) {
    self->send(st.init.driver, Status(self, 0));  // blocked: the driver checks for stalls
    return;
  }
  if (absl::Status s = st.graph->Started(*next); !s.ok()) {
    Fail(self, absl::StrCat("planner picked ", runtime::ActionToString(*next), ": ", s.message()));
    return;
  }
  st.lane_busy = true;
  self->send(st.microbatches.at({next->chunk, next->microbatch}), run_atom::value,
             static_cast<int>(next->kind));
}

void OnFinished(Self* self, const ComputeDone& done) {
  auto& st = self->state;
  st.lane_busy = false;
  st.busy_seconds += done.seconds;
  Action action{st.init.stage, static_cast<ActionKind>(done.kind), done.chunk, done.microbatch};
  if (st.init.trace) st.init.trace->stage(st.init.stage)->ComputeFinished(action, runtime::trace::NowNanos());
  if (!done.error.empty()) {
    Fail(self, absl::StrCat(runtime::ActionToString(action), " failed: ", done.error));
    return;
  }
  absl::StatusOr<std::vector<runtime::Transfer>> transfers = st.graph->Finished(action);
  if (!transfers.ok()) {
    Fail(self, std::string(transfers.status().message()));
    return;
  }
  const runtime::StepSpec& spec = st.init.spec;
  if (action.kind == ActionKind::kForward && action.chunk + 1 == spec.num_chunks) {
    st.losses[action.microbatch] = done.loss;
  }
  for (const runtime::PlannerEvent& e : runtime::EventsOnFinished(spec, action)) st.planner->OnEvent(e);
  const caf::actor& producer = st.microbatches.at({action.chunk, action.microbatch});
  for (const runtime::Transfer& t : *transfers) {
    ++st.sent;
    int consumer = t.kind == ActionKind::kSendForward ? static_cast<int>(ActionKind::kForward)
                                                      : static_cast<int>(ActionKind::kBackwardInput);
    self->send(producer, ship_atom::value, ShipOrder{consumer, t.to_stage, t.chunk, false});
  }
  // Outputs for a neighbour chunk on this same stage: StageState already counted them as
  // arrived; the payload still has to move to that chunk's microbatch actor.
  const bool forward = action.kind == ActionKind::kForward;
  const bool backward = action.kind == ActionKind::kBackward || action.kind == ActionKind::kBackwardInput;
  int neighbour = forward ? action.chunk + 1 : action.chunk - 1;
  if ((forward || backward) && neighbour >= 0 && neighbour < spec.num_chunks &&
      spec.chunk_to_stage[neighbour] == st.init.stage) {
    int consumer = forward ? static_cast<int>(ActionKind::kForward)
                           : static_cast<int>(ActionKind::kBackwardInput);
    st.local_in_flight.insert({consumer, neighbour, action.microbatch});
    self->send(producer, ship_atom::value, ShipOrder{consumer, st.init.stage, neighbour, true});
  }
  if (st.graph->Done()) {
    self->send(st.init.driver, Status(self, 0));  // final counters, for stall detection
    self->send(st.init.driver, StageDone{st.init.stage, st.losses, st.busy_seconds, ""});
    return;
  }
  Dispatch(self);
}

void OnInput(Self* self, TensorMessage& msg) {
  auto& st = self->state;
  if (st.failed) return;
  auto it = st.microbatches.find({msg.chunk, msg.microbatch});
  if (msg.to_stage != st.init.stage || it == st.microbatches.end()) {
    Fail(self, absl::StrCat("received a tensor for chunk ", msg.chunk, " microbatch ", msg.microbatch,
                            " from stage ", msg.from_stage, ", which this stage does not hold"));
    return;
  }
  if (!msg.local) {
    ++st.received;
    runtime::Transfer t{static_cast<ActionKind>(msg.kind) == ActionKind::kForward
                            ? ActionKind::kSendForward
                            : ActionKind::kSendBackward,
                        msg.from_stage, msg.to_stage, msg.chunk, msg.microbatch};
    if (st.init.trace) {
      st.init.trace->stage(st.init.stage)->InputArrived(
          t, static_cast<int64_t>(msg.payload.size() * sizeof(float)), runtime::trace::NowNanos());
    }
    if (absl::Status s = st.graph->InputArrived(t); !s.ok()) {
      Fail(self, std::string(s.message()));
      return;
    }
    st.planner->OnEvent(runtime::EventOnArrival(t));
  } else {
    st.local_in_flight.erase({msg.kind, msg.chunk, msg.microbatch});
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
    const int64_t begin = trace ? runtime::trace::NowNanos() : 0;
    auto message = phase();
    if (trace) trace->Record(ActionKind::kOptimizer, 0, 0, begin, runtime::trace::NowNanos());
    caf::anon_send(driver, std::move(message));
  });
}

}  // namespace

caf::behavior StageActor(Self* self, StageActorInit init) {
  self->state.init = std::move(init);
  auto& st = self->state;
  for (int c = 0; c < st.init.spec.num_chunks; ++c) {
    if (st.init.spec.chunk_to_stage[c] != st.init.stage) continue;
    for (int mb = 0; mb < st.init.spec.num_microbatches; ++mb) {
      MicrobatchActorInit mi{st.init.stage, c, mb, caf::actor_cast<caf::actor>(self), st.init.comm,
                             st.init.lane, st.init.work,
                             st.init.trace ? st.init.trace->compute(st.init.stage) : nullptr};
      st.microbatches[{c, mb}] = self->spawn(MicrobatchActor, mi);
    }
  }
  return {
      [=](start_atom, int64_t step) {
        auto& st = self->state;
        st.step = step;
        st.failed = false;
        st.lane_busy = false;
        st.sent = st.received = 0;
        st.busy_seconds = 0.0;
        st.losses.assign(st.init.spec.num_microbatches, 0.0);
        st.local_in_flight.clear();
        st.graph = std::make_unique<runtime::StageState>(st.init.spec, st.init.stage);
        st.planner = st.init.planner->MakePlanner(st.init.spec, st.init.stage);
        runtime::StageWork* work = st.init.work;
        st.init.lane->Post([work, step] { work->BeginStep(step); });
        Dispatch(self);
      },
      [=](TensorMessage& msg) { OnInput(self, msg); },
      [=](const ComputeDone& done) { OnFinished(self, done); },
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
          return SquaredNorms{stage, work->SquaredNorms()};
        });
      },
      [=](optim_atom, double scale, int step) {
        auto& st = self->state;
        PostOptimizerPhase(self, [work = st.init.work, stage = st.init.stage, scale, step] {
          work->ApplyOptimizer(scale, step);
          return OptimizerDone{stage};
        });
      },
  };
}

}  // namespace stagehand::actors
