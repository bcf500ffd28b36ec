// TraceFromSimulation: SimResult -> Trace, times scaled to microseconds.
// Not a simulator: it converts what Simulate returned.
#include "runtime/trace/from_simulation.h"

#include <algorithm>
#include <tuple>
#include <vector>

namespace stagehand::runtime::trace {

namespace {

// `action` over [start, end] (cost units) on the compute lane.
Span ActionSpan(const Action& action, double start, double end, int64_t step, double us_per_unit) {
  Span s;
  s.lane = Lane::kCompute;
  s.stage = action.stage;
  s.kind = action.kind;
  s.chunk = action.chunk;
  s.microbatch = action.microbatch;
  s.step = step;
  s.begin_us = start * us_per_unit;
  s.end_us = end * us_per_unit;
  return s;
}

// A sub-step as the runtime's trace shows it: a whole action as a plain compute span, a
// dispatch / combine on the a2a lane, other parts on the compute lane, with layer and part.
Span SubStepSpan(const TimedSubStep& timed, int64_t step, double us_per_unit) {
  Span s = ActionSpan(timed.order.step.action, timed.start, timed.end, step, us_per_unit);
  if (timed.order.lane() == SubStepLane::kCommunication) s.lane = Lane::kAllToAll;
  if (!timed.order.whole) {
    s.layer = timed.order.step.layer;
    s.part = timed.order.step.part;
  }
  return s;
}

// One stage's compute spans (with sub-steps, one per sub-step on the lane it ran; else one
// per action) and its activation count after every F / W / B.
void AddStage(const SimResult& result, std::size_t stage, const SimulationTraceOptions& options,
              Trace* trace) {
  const double k = options.us_per_unit;
  const bool sub_steps = stage < result.sub_steps.size();
  if (sub_steps) {
    for (const TimedSubStep& timed : result.sub_steps[stage]) {
      trace->spans.push_back(SubStepSpan(timed, options.step, k));
    }
  }
  int activations = 0;
  for (const TimedAction& timed : result.per_stage[stage]) {
    const Span s = ActionSpan(timed.action, timed.start, timed.end, options.step, k);
    if (!sub_steps) trace->spans.push_back(s);
    const int before = activations;
    if (s.kind == ActionKind::kForward) ++activations;
    if (s.kind == ActionKind::kBackwardWeight || s.kind == ActionKind::kBackward) --activations;
    if (activations != before) {
      trace->memory.push_back(MemorySample{s.stage, options.step, s.end_us, activations, 0});
    }
  }
}

}  // namespace

Trace TraceFromSimulation(const SimResult& result, const StepSpec& spec,
                          const SimulationTraceOptions& options) {
  Trace trace;
  trace.process = "simulator";
  trace.num_stages = spec.num_stages;
  trace.num_chunks = spec.num_chunks;
  trace.num_microbatches = spec.num_microbatches;
  trace.virtual_time = true;
  const double k = options.us_per_unit;
  for (size_t stage = 0; stage < result.per_stage.size(); ++stage) {
    AddStage(result, stage, options, &trace);
  }
  for (const TimedTransfer& timed : result.transfers) {
    const Transfer& t = timed.transfer;
    Span send = ActionSpan(SendAction(t), timed.start, timed.end, options.step, k);
    send.lane = Lane::kSend;
    send.peer = t.to_stage;
    send.bytes = options.transfer_bytes;
    Span recv = send;
    recv.lane = Lane::kRecv;
    recv.stage = t.to_stage;
    recv.kind = RecvAction(t).kind;
    recv.peer = t.from_stage;
    trace.spans.push_back(send);
    trace.spans.push_back(recv);
  }
  trace.steps.push_back(StepSpan{options.step, 0, result.step_time * k});
  std::stable_sort(trace.spans.begin(), trace.spans.end(), [](const Span& a, const Span& b) {
    return std::tie(a.stage, a.lane, a.begin_us) < std::tie(b.stage, b.lane, b.begin_us);
  });
  ComputeWaits(&trace);
  return trace;
}

}  // namespace stagehand::runtime::trace
