// HeldOutPass: the chunk-by-chunk forward pass with UCX hand-offs between ranks.
#include "runtime/train/held_out_pass.h"

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"

namespace stagehand::runtime {
namespace {

constexpr int kEvalMicrobatch = -1;  // the slot Evaluate uses; never a training microbatch

// One UCX operation's end, waited for by the pass's thread.
class Completion {
 public:
  void Set(absl::Status status) {
    std::lock_guard<std::mutex> lock(mu_);
    status_ = std::move(status);
    done_ = true;
    cv_.notify_all();
  }
  // The operation's status; Cancelled when `stop` is set first (the operation stays posted
  // and keeps its buffer alive through its callback).
  absl::Status Wait(const std::atomic<bool>* stop, const std::string& what) {
    std::unique_lock<std::mutex> lock(mu_);
    while (!done_) {
      cv_.wait_for(lock, std::chrono::milliseconds(100));
      if (!done_ && stop != nullptr && stop->load()) {
        return absl::CancelledError(absl::StrCat("stopped while waiting for ", what));
      }
    }
    return status_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  absl::Status status_;
};

std::string Describe(int batch, int chunk, int64_t step) {
  return absl::StrCat("the held-out activation of batch ", batch, " into chunk ", chunk,
                      " (evaluation after step ", step, ")");
}

absl::Status CheckInit(const HeldOutPassInit& in, int64_t step, int batches) {
  const int C = static_cast<int>(in.chunk_rank.size());
  if (in.sampler == nullptr || in.transport == nullptr || in.tensor_floats <= 0 || C < 1 ||
      in.chunks.empty()) {
    return absl::InvalidArgumentError(
        "held-out pass: needs a sampler, a transport, a tensor size and chunks");
  }
  if (step < 0 || step > kHeldOutMaxStep || batches < 1 || batches > kHeldOutMaxBatches ||
      C > kHeldOutMaxChunks) {
    return absl::InvalidArgumentError(
        absl::StrCat("held-out pass: step ", step, ", ", batches, " batches and ", C,
                     " chunks do not fit the transfer tags (at most ", kHeldOutMaxStep, ", ",
                     kHeldOutMaxBatches, ", ", kHeldOutMaxChunks, ")"));
  }
  for (const auto& [c, chunk] : in.chunks) {
    if (c < 0 || c >= C || chunk == nullptr || in.chunk_rank[c] != in.rank) {
      return absl::InvalidArgumentError(absl::StrCat("held-out pass: rank ", in.rank,
                                                     " is given chunk ", c,
                                                     " that the placement does not put on it"));
    }
  }
  for (int c = 0; c < C; ++c) {
    if (in.chunk_rank[c] == in.rank && in.chunks.count(c) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("held-out pass: rank ", in.rank,
                                                     " holds chunk ", c,
                                                     " by the placement but was not given it"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

uint64_t HeldOutTag(int64_t step, int batch, int chunk) {
  return (uint64_t{1} << 63) | (static_cast<uint64_t>(step) << 28) |
         (static_cast<uint64_t>(batch) << 12) | static_cast<uint64_t>(chunk);
}

absl::StatusOr<std::optional<double>> RunHeldOutPass(const HeldOutPassInit& in, int64_t step,
                                                     int batches) {
  if (absl::Status s = CheckInit(in, step, batches); !s.ok()) return s;
  const int C = static_cast<int>(in.chunk_rank.size());
  MicrobatchData data(in.chunks.begin()->second->options());
  const size_t bytes = static_cast<size_t>(in.tensor_floats) * sizeof(float);
  double loss = 0.0;  // summed in batch order, as Evaluate does
  for (int b = 0; b < batches; ++b) {
    if (in.stop != nullptr && in.stop->load()) {
      return absl::CancelledError(
          absl::StrCat("held-out pass after step ", step, " stopped before batch ", b));
    }
    data.Draw(*in.sampler, b, 0);
    std::vector<std::shared_ptr<std::vector<float>>> inputs;  // alive until the batch is released
    std::vector<std::pair<std::shared_ptr<Completion>, std::string>> sends;
    for (const auto& [c, chunk] : in.chunks) {  // ascending chunk index: model order
      const float* x = nullptr;
      if (c > 0 && in.chunk_rank[c - 1] == in.rank) {
        x = in.chunks.at(c - 1)->output(kEvalMicrobatch);
      } else if (c > 0) {
        const std::string what =
            absl::StrCat(Describe(b, c, step), " from rank ", in.chunk_rank[c - 1]);
        if (in.note) in.note(absl::StrCat("held-out evaluation: waiting for ", what));
        auto buffer = std::make_shared<std::vector<float>>(in.tensor_floats);
        auto done = std::make_shared<Completion>();
        in.transport->Receive(HeldOutTag(step, b, c), buffer->data(), bytes,
                              [buffer, done](absl::Status s) { done->Set(std::move(s)); });
        if (absl::Status s = done->Wait(in.stop, what); !s.ok()) {
          return absl::Status(s.code(), absl::StrCat("receiving ", what, ": ", s.message()));
        }
        inputs.push_back(buffer);
        x = buffer->data();
      }
      if (in.note)
        in.note(
            absl::StrCat("held-out evaluation: F c", c, " batch ", b, " (after step ", step, ")"));
      if (absl::Status s = chunk->Forward(kEvalMicrobatch, data.tokens(), x, data.targets(),
                                          data.documents());
          !s.ok())
        return s;
      if (c == C - 1) {
        loss += chunk->loss(kEvalMicrobatch);
      } else if (in.chunk_rank[c + 1] != in.rank) {
        const float* out = chunk->output(kEvalMicrobatch);
        auto payload = std::make_shared<std::vector<float>>(out, out + in.tensor_floats);
        auto done = std::make_shared<Completion>();
        in.transport->Send(in.chunk_rank[c + 1], HeldOutTag(step, b, c + 1), payload->data(), bytes,
                           [payload, done](absl::Status s) { done->Set(std::move(s)); });
        sends.emplace_back(
            done, absl::StrCat(Describe(b, c + 1, step), " to rank ", in.chunk_rank[c + 1]));
      }
    }
    for (const auto& [c, chunk] : in.chunks) chunk->Release(kEvalMicrobatch);
    for (auto& [done, what] : sends) {
      if (absl::Status s = done->Wait(in.stop, what); !s.ok()) {
        return absl::Status(s.code(), absl::StrCat("sending ", what, ": ", s.message()));
      }
    }
  }
  if (in.chunk_rank[C - 1] != in.rank) return std::optional<double>();
  return std::optional<double>(loss / batches);
}

}  // namespace stagehand::runtime
