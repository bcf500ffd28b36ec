// Trace: the timeline of training steps as plain data: spans on each stage's lanes
// (compute, send, receive), activation-memory samples and step boundaries, on one clock.
// Not a recorder, a file format or an analysis: see recorder.h, chrome_json.h, summary.h.
#ifndef STAGEHAND_RUNTIME_TRACE_TRACE_H_
#define STAGEHAND_RUNTIME_TRACE_TRACE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "runtime/action.h"
#include "runtime/sub_step.h"

namespace stagehand::runtime::trace {

// The lanes of one stage. Compute runs F/I/W/B (or their compute sub-steps) and the
// optimizer's phases; send is the stage's outgoing transfer lane; receive holds the transfers
// arriving at the stage; a2a is the stage's communication lane for the MoE dispatch / combine
// sub-steps (fine-grained callables: the all-to-all), present only when sub-steps ran.
enum class Lane { kCompute, kSend, kRecv, kAllToAll };

// "compute", "send", "recv", "a2a"; ParseLane is the inverse (false if unknown).
absl::string_view LaneName(Lane lane);
bool ParseLane(absl::string_view name, Lane* lane);

// One interval on a stage's lane. Times are microseconds since the trace's time 0.
//   compute: kind F, I, W, B or OPTIM; chunk and microbatch of the action.
//   send:    kind SEND_F / SEND_B, from the output's hand-off to the transfer lane until
//            the link delivers it; peer = the destination stage. Also (data parallelism)
//            kind REDUCE_GRAD: one gradient bucket summed across the replicas; chunk = the
//            bucket's chunk, microbatch = the bucket's index, peer -1, bytes its size.
//   recv:    kind RECV_F / RECV_B, from the sender's hand-off until the receiving stage
//            took it in; peer = the source stage.
//   a2a:     a dispatch or combine sub-step of the F/I/B (kind) of chunk and microbatch.
// For transfers, chunk is the destination chunk (as in runtime::Transfer).
// Sub-steps (runtime/sub_step.h): a compute or a2a span with layer >= 0 is one sub-step
// (global layer `layer`, part `part`) of its action; an action run whole has layer -1.
struct Span {
  Lane lane = Lane::kCompute;
  int stage = 0;
  ActionKind kind = ActionKind::kForward;
  int chunk = 0;
  int microbatch = 0;
  int peer = -1;      // transfers: the other stage
  int64_t bytes = 0;  // transfers: payload bytes
  int64_t step = 0;
  double begin_us = 0;
  double end_us = 0;
  // Compute F/I/W/B: begin minus the time its inputs were all there (see ComputeWaits);
  // -1 where unknown.
  double wait_us = -1;
  int layer = -1;                         // sub-steps: the global layer; else -1
  SubStepKind part = SubStepKind::kRest;  // sub-steps: which part of the layer

  double duration_us() const { return end_us - begin_us; }
  bool sub_step() const { return layer >= 0; }
};

// Activation memory held by a stage after an action changed it.
struct MemorySample {
  int stage = 0;
  int64_t step = 0;
  double time_us = 0;
  int activations = 0;  // (chunk, microbatch) activations held
  int64_t bytes = 0;    // their bytes, where the model says (0 = unknown)
  // A GPU stage's device memory from its caching allocator: in use and the peak so far
  // (StageWork::DeviceMemory); -1 where the stage has none (the CPU's).
  int64_t device_in_use = -1;
  int64_t device_peak = -1;
};

// One training step, as the caller of RunStep saw it (or the simulator's makespan).
struct StepSpan {
  int64_t step = 0;
  double begin_us = 0;
  double end_us = 0;
};

struct Trace {
  std::string process = "stagehand";  // who recorded it, e.g. "rank 0"
  int num_stages = 0;                 // P of the step
  int num_chunks = 0;                 // C of the step (the last chunk receives no gradient)
  int num_microbatches = 0;           // M of the step
  // Wall-clock time (microseconds since the Unix epoch) of this trace's time 0, and the
  // correction that maps this process's wall clock onto the reference clock (measured by
  // whoever merges; 0 = trust the wall clock). Merging aligns traces on their sum.
  double epoch_unix_us = 0;
  double clock_offset_us = 0;
  // Simulator traces: times are cost-model units scaled by 1000 (1 unit shows as 1 ms).
  bool virtual_time = false;
  std::vector<Span> spans;
  std::vector<MemorySample> memory;
  std::vector<StepSpan> steps;
};

// The text form of a span's action: "F c0 mb3", "SEND_F c1 mb3 -> s2", "RECV_B c0 mb1 <- s1",
// "OPTIM"; a sub-step: its part, kind and microbatch, chunk and layer, "dispatch F3 c1 L2".
std::string SpanLabel(const Span& span);

// A deterministic id shared by a transfer's send and receive spans (the flow arrow between
// them), equal in every process that records either side; below 2^53.
uint64_t TransferFlowId(int64_t step, ActionKind kind, int from_stage, int to_stage, int chunk,
                        int microbatch);
uint64_t TransferFlowId(const Span& transfer_span);

// Fills wait_us of every F/I/W/B span: begin minus the time the last of its inputs was
// there (step graph rules of stage_state.h: F waits for its activation, B/B for its F and
// its gradient, W for its B; an F of chunk 0 is ready when its step begins). A receive's
// end is when its input arrived; an input from a chunk on the same stage is there when
// the producing action ended. Spans whose inputs are not in the trace keep -1.
// Sub-steps: an action's first sub-step waits as the action does (its end is its last
// sub-step's); each later one from the end of the sub-step before it in the action (on either
// lane), so that an action's own earlier sub-steps never count as its wait. a2a spans get
// waits the same way.
void ComputeWaits(Trace* trace);

// `trace` without steps 1 .. `last` (warm-up: allocation, first touch): their spans, memory
// samples and step spans.
Trace WithoutFirstSteps(Trace trace, int64_t last);

}  // namespace stagehand::runtime::trace

#endif  // STAGEHAND_RUNTIME_TRACE_TRACE_H_
