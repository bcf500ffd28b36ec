// CommActor behaviour.
#include "actors/comm_actor.h"

#include <algorithm>

#include "actors/messages.h"
#include "runtime/action.h"

namespace stagehand::actors {

namespace {

void RecordSend(runtime::trace::TraceRecorder::SendLane* trace, const TensorMessage& msg,
                std::chrono::steady_clock::time_point begin,
                std::chrono::steady_clock::time_point end) {
  if (trace == nullptr) return;
  using runtime::ActionKind;
  const ActionKind kind =
      msg.kind == ActionKind::kForward ? ActionKind::kSendForward : ActionKind::kSendBackward;
  trace->Record(kind, msg.to_stage, msg.chunk, msg.microbatch,
                static_cast<int64_t>(msg.payload.size() * sizeof(float)),
                runtime::trace::ToNanos(begin), runtime::trace::ToNanos(end));
}

}  // namespace

comm_actor::behavior_type CommActor(comm_actor::stateful_pointer<CommActorState> self,
                                    LinkModel link,
                                    runtime::trace::TraceRecorder::SendLane* trace) {
  self->state.link = link;
  self->state.trace = trace;
  self->state.lane_free_at = std::chrono::steady_clock::now();
  return {
      [=](const std::vector<tensor_inbox>& stages) { self->state.stages = stages; },
      [=](TensorMessage& msg) {
        auto& st = self->state;
        const tensor_inbox& dest = st.stages.at(msg.to_stage);
        const auto handed_off = std::chrono::steady_clock::now();
        msg.handed_off_ns = runtime::trace::ToNanos(handed_off);
        if (st.link.latency_us <= 0 && st.link.gbps <= 0) {
          RecordSend(st.trace, msg, handed_off, handed_off);
          self->send(dest, std::move(msg));
          return;
        }
        using namespace std::chrono;
        const auto now = handed_off;
        double wire_us = st.link.gbps > 0 ? msg.payload.size() * 32.0 / (st.link.gbps * 1e3) : 0;
        st.lane_free_at =
            std::max(now, st.lane_free_at) +
            duration_cast<steady_clock::duration>(duration<double, std::micro>(wire_us));
        auto arrive = st.lane_free_at + duration_cast<steady_clock::duration>(
                                            duration<double, std::micro>(st.link.latency_us));
        RecordSend(st.trace, msg, now, arrive);
        self->delayed_send(dest, duration_cast<microseconds>(arrive - now), std::move(msg));
      },
  };
}

}  // namespace stagehand::actors
