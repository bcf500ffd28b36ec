// TraceRecorder: records a process's actor events into per-lane buffers, each written by
// exactly one thread (a stage's lane thread, its transfer lane, its stage actor, the thread
// that runs steps) with no locks, and collects them into a Trace after the run.
// Not thread-safe across writers of one buffer, and not a file writer (chrome_json.h).
#ifndef STAGEHAND_RUNTIME_TRACE_RECORDER_H_
#define STAGEHAND_RUNTIME_TRACE_RECORDER_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "runtime/action.h"
#include "runtime/stage_state.h"
#include "runtime/sub_step.h"
#include "runtime/trace/trace.h"

namespace stagehand::runtime::trace {

// Append-only, single-writer storage in fixed blocks: an append never moves earlier
// records, costs a store and (once per block) an allocation.
template <typename T>
class RecordBuffer {
 public:
  static constexpr size_t kBlock = 4096;
  void Append(const T& record) {
    if (size_ == blocks_.size() * kBlock) blocks_.push_back(std::make_unique<T[]>(kBlock));
    blocks_[size_ / kBlock][size_ % kBlock] = record;
    ++size_;
  }
  size_t size() const { return size_; }
  const T& operator[](size_t i) const { return blocks_[i / kBlock][i % kBlock]; }

 private:
  std::vector<std::unique_ptr<T[]>> blocks_;
  size_t size_ = 0;
};

// Steady-clock nanoseconds: the one clock every writer of a process uses.
inline int64_t NowNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
inline int64_t ToNanos(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

class TraceRecorder {
 public:
  struct RawSpan {
    int64_t begin_ns = 0, end_ns = 0;
    int64_t step = 0;
    int64_t bytes = 0;
    ActionKind kind = ActionKind::kForward;
    int chunk = 0, microbatch = 0, peer = -1;
    int layer = -1;  // sub-steps: the global layer
    SubStepKind part = SubStepKind::kRest;
  };
  struct RawStep {
    int64_t step = 0;
    int64_t begin_ns = 0, end_ns = 0;
  };
  struct RawMemory {
    int64_t time_ns = 0;
    int64_t step = 0;
    int activations = 0;
    int64_t bytes = 0;
    int64_t device_in_use = -1, device_peak = -1;
  };

  // Written by the stage's compute lane thread (compute()), or by its sub-step communication
  // lane (all_to_all()).
  class ComputeLane {
   public:
    void Record(ActionKind kind, int chunk, int microbatch, int64_t begin_ns, int64_t end_ns) {
      spans_.Append(RawSpan{begin_ns, end_ns, owner_->step(), 0, kind, chunk, microbatch, -1});
    }
    // One sub-step (runtime/sub_step.h) of the action (kind, chunk, microbatch).
    void RecordSubStep(ActionKind kind, int chunk, int microbatch, int layer, SubStepKind part,
                       int64_t begin_ns, int64_t end_ns) {
      spans_.Append(
          RawSpan{begin_ns, end_ns, owner_->step(), 0, kind, chunk, microbatch, -1, layer, part});
    }

   private:
    friend class TraceRecorder;
    const TraceRecorder* owner_ = nullptr;
    RecordBuffer<RawSpan> spans_;
  };

  // Written by the stage's outgoing transfer lane.
  class SendLane {
   public:
    // `kind` is SEND_F or SEND_B; `chunk` the destination chunk.
    void Record(ActionKind kind, int to_stage, int chunk, int microbatch, int64_t bytes,
                int64_t begin_ns, int64_t end_ns) {
      RecordInStep(owner_->step(), kind, to_stage, chunk, microbatch, bytes, begin_ns, end_ns);
    }
    // As Record, tagged with `step` rather than the recorder's current one: for a writer
    // that records a send when it completes, which may be after its step ended in this
    // process (a cluster send to another rank).
    void RecordInStep(int64_t step, ActionKind kind, int to_stage, int chunk, int microbatch,
                      int64_t bytes, int64_t begin_ns, int64_t end_ns) {
      spans_.Append(RawSpan{begin_ns, end_ns, step, bytes, kind, chunk, microbatch, to_stage});
    }

   private:
    friend class TraceRecorder;
    const TraceRecorder* owner_ = nullptr;
    RecordBuffer<RawSpan> spans_;
  };

  // Written by the stage actor: transfers it took in, and activation memory.
  class StageLane {
   public:
    void InputArrived(const Transfer& transfer, int64_t bytes, int64_t time_ns);
    // Tracks activations: +1 after F, -1 after W or B (a sample each time), with the stage's
    // device memory then where it has one (-1: none).
    void ComputeFinished(const Action& action, int64_t time_ns, int64_t device_in_use = -1,
                         int64_t device_peak = -1);

   private:
    friend class TraceRecorder;
    const TraceRecorder* owner_ = nullptr;
    RecordBuffer<RawSpan> arrivals_;  // end_ns = taken in; begin_ns unused
    RecordBuffer<RawMemory> memory_;
    int activations_ = 0;
    int64_t bytes_ = 0;
  };

  // Time 0 of the trace is now.
  explicit TraceRecorder(std::string process = "stagehand");
  TraceRecorder(const TraceRecorder&) = delete;
  TraceRecorder& operator=(const TraceRecorder&) = delete;

  // Before any event (the pipeline does this): sizes the lanes for a step of P stages, C
  // chunks and M microbatches. InvalidArgument for P < 1; FailedPrecondition when called
  // again with another shape (one recorder serves one pipeline).
  absl::Status Configure(int num_stages, int num_chunks, int num_microbatches);
  // Before any event: bytes one microbatch's activations take on chunk c (C entries), for
  // the memory counter; without it the counter has activation counts only.
  void SetActivationBytes(std::vector<int64_t> per_chunk) {
    activation_bytes_ = std::move(per_chunk);
  }

  int num_stages() const { return num_stages_; }
  ComputeLane* compute(int stage) { return &compute_.at(stage); }
  SendLane* send(int stage) { return &send_.at(stage); }
  // Written by the stage's sub-step communication lane: MoE dispatch / combine sub-steps
  // (RecordSubStep), on the trace's a2a lane.
  ComputeLane* all_to_all(int stage) { return &all_to_all_.at(stage); }
  // Written by the stage's reduction lane (data parallelism): REDUCE_GRAD spans, kind
  // kReduceGrad, to_stage -1, chunk = the bucket's chunk, microbatch = the bucket's index.
  // They appear on the stage's send (communication) lane.
  SendLane* reduce(int stage) { return &reduce_.at(stage); }
  StageLane* stage(int stage) { return &stage_.at(stage); }

  // Called by the thread that runs steps, before and after each; events in between carry
  // `step`.
  void StepBegan(int64_t step, int64_t time_ns);
  void StepEnded(int64_t step, int64_t time_ns);
  int64_t step() const { return step_.load(std::memory_order_relaxed); }

  // Everything recorded so far, on the trace clock (time 0 = this recorder's creation),
  // with receives matched to their sends and waits computed. Call only while no writer
  // runs (between steps or after the run).
  Trace Collect() const;

 private:
  std::string process_;
  int num_stages_ = 0, num_chunks_ = 0, num_microbatches_ = 0;
  std::vector<int64_t> activation_bytes_;
  int64_t origin_ns_ = 0;
  double epoch_unix_us_ = 0;
  std::atomic<int64_t> step_{0};
  std::vector<ComputeLane> compute_;
  std::vector<ComputeLane> all_to_all_;
  std::vector<SendLane> send_;
  std::vector<SendLane> reduce_;
  std::vector<StageLane> stage_;
  int64_t step_begin_ns_ = 0;
  RecordBuffer<RawStep> steps_;
};

}  // namespace stagehand::runtime::trace

#endif  // STAGEHAND_RUNTIME_TRACE_RECORDER_H_
