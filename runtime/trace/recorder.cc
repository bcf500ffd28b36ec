// TraceRecorder: per-lane buffers and their collection into one Trace.
// Not a file writer: Collect() hands the Trace to chrome_json.h.
#include "runtime/trace/recorder.h"

#include <algorithm>
#include <tuple>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"

namespace stagehand::runtime::trace {

void TraceRecorder::StageLane::InputArrived(const Transfer& transfer, int64_t bytes,
                                            int64_t time_ns) {
  arrivals_.Append(RawSpan{time_ns, time_ns, owner_->step(), bytes, RecvAction(transfer).kind,
                           transfer.chunk, transfer.microbatch, transfer.from_stage});
}

void TraceRecorder::StageLane::ComputeFinished(const Action& action, int64_t time_ns,
                                               int64_t device_in_use, int64_t device_peak) {
  const std::vector<int64_t>& per_chunk = owner_->activation_bytes_;
  const int64_t bytes =
      action.chunk < static_cast<int>(per_chunk.size()) ? per_chunk[action.chunk] : 0;
  if (action.kind == ActionKind::kForward) {
    ++activations_;
    bytes_ += bytes;
  } else if (action.kind == ActionKind::kBackwardWeight || action.kind == ActionKind::kBackward) {
    --activations_;
    bytes_ -= bytes;
  } else {
    return;
  }
  memory_.Append(
      RawMemory{time_ns, owner_->step(), activations_, bytes_, device_in_use, device_peak});
}

TraceRecorder::TraceRecorder(std::string process) : process_(std::move(process)) {
  origin_ns_ = NowNanos();
  epoch_unix_us_ =
      std::chrono::duration<double, std::micro>(std::chrono::system_clock::now().time_since_epoch())
          .count();
}

absl::Status TraceRecorder::Configure(int num_stages, int num_chunks, int num_microbatches) {
  if (num_stages < 1) {
    return absl::InvalidArgumentError(absl::StrCat("trace recorder for ", num_stages, " stages"));
  }
  if (num_stages_ != 0) {
    if (num_stages == num_stages_ && num_chunks == num_chunks_ &&
        num_microbatches == num_microbatches_) {
      return absl::OkStatus();
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "the trace recorder already records a step of P=", num_stages_, " C=", num_chunks_,
        " M=", num_microbatches_, "; use one recorder per pipeline"));
  }
  num_stages_ = num_stages;
  num_chunks_ = num_chunks;
  num_microbatches_ = num_microbatches;
  compute_.resize(num_stages);
  all_to_all_.resize(num_stages);
  send_.resize(num_stages);
  reduce_.resize(num_stages);
  stage_.resize(num_stages);
  for (int s = 0; s < num_stages; ++s) {
    compute_[s].owner_ = this;
    all_to_all_[s].owner_ = this;
    send_[s].owner_ = this;
    reduce_[s].owner_ = this;
    stage_[s].owner_ = this;
  }
  return absl::OkStatus();
}

void TraceRecorder::StepBegan(int64_t step, int64_t time_ns) {
  step_.store(step, std::memory_order_relaxed);
  step_begin_ns_ = time_ns;
}

void TraceRecorder::StepEnded(int64_t step, int64_t time_ns) {
  steps_.Append(RawStep{step, step_begin_ns_, time_ns});
}

Trace TraceRecorder::Collect() const {
  Trace trace;
  trace.process = process_;
  trace.num_stages = num_stages_;
  trace.num_chunks = num_chunks_;
  trace.num_microbatches = num_microbatches_;
  trace.epoch_unix_us = epoch_unix_us_;
  auto us = [this](int64_t ns) { return (ns - origin_ns_) / 1e3; };
  auto add = [&](Lane lane, int stage, const RawSpan& r, double begin_us) {
    Span s;
    s.lane = lane;
    s.stage = stage;
    s.kind = r.kind;
    s.chunk = r.chunk;
    s.microbatch = r.microbatch;
    s.peer = r.peer;
    s.bytes = r.bytes;
    s.step = r.step;
    s.begin_us = begin_us;
    s.end_us = us(r.end_ns);
    s.layer = r.layer;
    s.part = r.part;
    trace.spans.push_back(s);
  };
  absl::flat_hash_map<uint64_t, double> send_begin;  // flow id -> begin of the send
  for (int stage = 0; stage < num_stages_; ++stage) {
    const RecordBuffer<RawSpan>& compute = compute_[stage].spans_;
    for (size_t i = 0; i < compute.size(); ++i)
      add(Lane::kCompute, stage, compute[i], us(compute[i].begin_ns));
    const RecordBuffer<RawSpan>& a2a = all_to_all_[stage].spans_;
    for (size_t i = 0; i < a2a.size(); ++i)
      add(Lane::kAllToAll, stage, a2a[i], us(a2a[i].begin_ns));
    const RecordBuffer<RawSpan>& sends = send_[stage].spans_;
    for (size_t i = 0; i < sends.size(); ++i) {
      const RawSpan& r = sends[i];
      add(Lane::kSend, stage, r, us(r.begin_ns));
      send_begin[TransferFlowId(r.step, r.kind, stage, r.peer, r.chunk, r.microbatch)] =
          us(r.begin_ns);
    }
    const RecordBuffer<RawSpan>& reductions = reduce_[stage].spans_;
    for (size_t i = 0; i < reductions.size(); ++i) {
      add(Lane::kSend, stage, reductions[i], us(reductions[i].begin_ns));
    }
  }
  for (int stage = 0; stage < num_stages_; ++stage) {
    const RecordBuffer<RawSpan>& arrivals = stage_[stage].arrivals_;
    for (size_t i = 0; i < arrivals.size(); ++i) {
      const RawSpan& r = arrivals[i];
      auto it =
          send_begin.find(TransferFlowId(r.step, r.kind, r.peer, stage, r.chunk, r.microbatch));
      add(Lane::kRecv, stage, r, it != send_begin.end() ? it->second : us(r.end_ns));
    }
    const RecordBuffer<RawMemory>& memory = stage_[stage].memory_;
    for (size_t i = 0; i < memory.size(); ++i) {
      trace.memory.push_back(MemorySample{stage, memory[i].step, us(memory[i].time_ns),
                                          memory[i].activations, memory[i].bytes,
                                          memory[i].device_in_use, memory[i].device_peak});
    }
  }
  for (size_t i = 0; i < steps_.size(); ++i) {
    trace.steps.push_back(StepSpan{steps_[i].step, us(steps_[i].begin_ns), us(steps_[i].end_ns)});
  }
  std::stable_sort(trace.spans.begin(), trace.spans.end(), [](const Span& a, const Span& b) {
    return std::tie(a.stage, a.lane, a.begin_us) < std::tie(b.stage, b.lane, b.begin_us);
  });
  std::stable_sort(trace.memory.begin(), trace.memory.end(), [](const auto& a, const auto& b) {
    return std::tie(a.stage, a.time_us) < std::tie(b.stage, b.time_us);
  });
  ComputeWaits(&trace);
  return trace;
}

}  // namespace stagehand::runtime::trace
