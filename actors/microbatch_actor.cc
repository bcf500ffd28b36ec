// MicrobatchActor behaviour.
#include "actors/microbatch_actor.h"

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "actors/messages.h"
#include "runtime/action.h"

namespace stagehand::actors {

using runtime::ActionKind;

namespace {

// One span per sub-step on the lane it ran: compute sub-steps on the compute lane, dispatch /
// combine on the a2a lane; an action run whole is one plain span.
void RecordSubStepSpan(runtime::trace::TraceRecorder::ComputeLane* trace,
                       const runtime::SubStepOrder& order,
                       std::chrono::steady_clock::time_point start,
                       std::chrono::steady_clock::time_point end) {
  const runtime::Action& a = order.step.action;
  if (order.whole) {
    trace->Record(a.kind, a.chunk, a.microbatch, runtime::trace::ToNanos(start),
                  runtime::trace::ToNanos(end));
    return;
  }
  trace->RecordSubStep(a.kind, a.chunk, a.microbatch, order.step.layer, order.step.part,
                       runtime::trace::ToNanos(start), runtime::trace::ToNanos(end));
}

// A compute action's results while it runs: what the work writes (its output, its loss) and
// what the stage is told.
struct ComputeResult {
  ComputeDone done;
  std::vector<float> output;
};

// The action ran from `begin_ns` to `end_ns` (steady clock) with `status`: its span on the
// trace, and its completion (with the output) to the microbatch actor.
void Report(const microbatch_actor& me, runtime::trace::TraceRecorder::ComputeLane* trace,
            ComputeResult& result, const absl::Status& status, int64_t begin_ns, int64_t end_ns) {
  result.done.seconds = 1e-9 * static_cast<double>(end_ns - begin_ns);
  result.done.end_ns = end_ns;
  const ComputeDone& done = result.done;
  if (trace) trace->Record(done.kind, done.chunk, done.microbatch, begin_ns, end_ns);
  if (!status.ok()) result.done.error = std::string(status.message());
  caf::anon_send(me, std::move(result.done), std::move(result.output));
}

// Sub-step `run` of this (chunk, microbatch) on the lane it names: its first takes the input,
// its last gives the output, as a whole action does.
void PostSubStep(microbatch_actor::stateful_pointer<MicrobatchActorState> self,
                 const SubStepRun& run) {
  auto& st = self->state;
  const MicrobatchActorInit& in = st.init;
  const runtime::SubStepOrder order{
      runtime::SubStep{runtime::Action{in.stage, run.kind, in.chunk, in.microbatch}, run.layer,
                       run.part},
      run.index, run.count, run.whole};
  std::vector<float> input;
  if (run.index == 0) {
    input = std::move(run.kind == ActionKind::kForward ? st.activation_in : st.gradient_in);
  }
  const bool comm = order.lane() == runtime::SubStepLane::kCommunication;
  auto job = [me = caf::actor_cast<microbatch_actor>(self), work = in.work,
              trace = comm ? in.a2a_trace : in.trace, order, run,
              input = std::move(input)]() mutable {
    const runtime::Action& a = order.step.action;
    SubStepDone done{run, ComputeDone{a.kind, a.chunk, a.microbatch, 0.0, 0.0, ""}};
    const auto start = std::chrono::steady_clock::now();
    std::vector<float> output;
    const absl::Status s =
        work->RunSubStep(order, input.empty() ? nullptr : &input, &output, &done.done.loss);
    if (a.kind == ActionKind::kForward && order.index == 0) {
      done.done.data_seconds = work->TakeDataSeconds();
    }
    const auto end = std::chrono::steady_clock::now();
    done.done.seconds = std::chrono::duration<double>(end - start).count();
    if (trace) RecordSubStepSpan(trace, order, start, end);
    if (!s.ok()) done.done.error = std::string(s.message());
    caf::anon_send(me, std::move(done), std::move(output));
  };
  (comm ? in.comm_lane : in.lane)->Post(std::move(job));
}

}  // namespace

microbatch_actor::behavior_type MicrobatchActor(
    microbatch_actor::stateful_pointer<MicrobatchActorState> self, MicrobatchActorInit init) {
  self->state.init = std::move(init);
  return {
      // An input for this (chunk, microbatch), routed by the stage.
      [=](TensorMessage& msg) {
        auto& st = self->state;
        if (msg.kind == ActionKind::kForward) {
          st.activation_in = std::move(msg.payload);
        } else {
          st.gradient_in = std::move(msg.payload);
        }
      },
      // The stage's planner picked an action of ours: run it on the lane.
      [=](run_atom, ActionKind kind, uint64_t ticket) {
        auto& st = self->state;
        const MicrobatchActorInit& in = st.init;
        // Inputs move into the job: the chunk copies them, so they are not needed after.
        auto job = [me = caf::actor_cast<microbatch_actor>(self), work = in.work, trace = in.trace,
                    chunk = in.chunk, mb = in.microbatch, kind,
                    activation = std::move(st.activation_in),
                    gradient = std::move(st.gradient_in)]() mutable {
          // The results live here until the action completes: when the call returns, or, for
          // a work that completes later (a GPU stream), when its completion runs.
          auto result = std::make_shared<ComputeResult>();
          result->done = ComputeDone{kind, chunk, mb, 0.0, 0.0, ""};
          const auto start = std::chrono::steady_clock::now();
          absl::Status s;
          const std::vector<float>* grad = gradient.empty() ? nullptr : &gradient;
          switch (kind) {
            case ActionKind::kForward:
              s = work->Forward(chunk, mb, activation.empty() ? nullptr : &activation,
                                &result->output, &result->done.loss);
              result->done.data_seconds = work->TakeDataSeconds();
              break;
            case ActionKind::kBackwardInput:
              s = work->BackwardInput(chunk, mb, grad, &result->output);
              break;
            case ActionKind::kBackwardWeight:
              s = work->BackwardWeights(chunk, mb);
              break;
            case ActionKind::kBackward:
              s = work->Backward(chunk, mb, grad, &result->output);
              break;
            default:
              s = absl::InternalError("not a compute action");
          }
          const int64_t start_ns = runtime::trace::ToNanos(start);
          if (s.ok() && work->CompletesLater()) {
            // Its device times, when the work knows them, are the action's span.
            work->OnComplete([me, trace, result, start_ns](absl::Status status, int64_t begin_ns,
                                                           int64_t end_ns) {
              if (begin_ns <= 0 || end_ns < begin_ns) {  // unknown: from the call to now
                begin_ns = start_ns;
                end_ns = runtime::trace::NowNanos();
              }
              Report(me, trace, *result, status, begin_ns, end_ns);
            });
            return;
          }
          Report(me, trace, *result, s, start_ns,
                 runtime::trace::ToNanos(std::chrono::steady_clock::now()));
        };
        // In the order the stage sent its actions, whichever microbatch actor posts first.
        in.lane->PostInOrder(ticket, std::move(job));
      },
      // The stage's loop launched one of our sub-steps: run it on its lane.
      [=](run_atom, const SubStepRun& run) { PostSubStep(self, run); },
      [=](SubStepDone& done, std::vector<float>& output) {
        if (!output.empty()) self->state.output = std::move(output);
        self->send(self->state.init.owner, std::move(done));
      },
      // The lane finished: keep the output, tell the stage.
      [=](ComputeDone& done, std::vector<float>& output) {
        if (!output.empty()) self->state.output = std::move(output);
        self->send(self->state.init.owner, std::move(done));
      },
      // Hand the output on: to a chunk on our own stage, or over the transfer lane.
      [=](ship_atom, const ShipOrder& order) {
        auto& st = self->state;
        TensorMessage msg{order.kind,         st.init.stage, order.to_stage,      order.dest_chunk,
                          st.init.microbatch, order.local,   std::move(st.output)};
        st.output.clear();
        if (order.local) {
          self->send(st.init.owner, std::move(msg));
        } else {
          self->send(st.init.comm, std::move(msg));
        }
      },
  };
}

}  // namespace stagehand::actors
