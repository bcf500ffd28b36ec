// LaterCompletionWork: the inner work in the call, its results delivered by a completion thread.
#include "actors/testing/later_completion_work.h"

#include <utility>

#include "runtime/trace/recorder.h"

namespace stagehand::testing {

LaterCompletionWork::LaterCompletionWork(std::unique_ptr<runtime::StageWork> inner,
                                         std::chrono::microseconds delay)
    : ForwardingStageWork(std::move(inner)), delay_(delay), thread_([this] { Loop(); }) {}

LaterCompletionWork::~LaterCompletionWork() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

absl::Status LaterCompletionWork::Held(const absl::Status& status, Pending pending) {
  if (status.ok()) last_ = std::make_unique<Pending>(std::move(pending));
  return status;
}

absl::Status LaterCompletionWork::Forward(int chunk, int mb, const runtime::Payload* input,
                                          runtime::Payload* output, double* loss) {
  Pending p;
  p.output = output;
  p.loss_out = loss;
  const absl::Status s = inner().Forward(chunk, mb, input, &p.result, &p.loss);
  return Held(s, std::move(p));
}

absl::Status LaterCompletionWork::BackwardInput(int chunk, int mb, const runtime::Payload* grad,
                                                runtime::Payload* input_grad) {
  Pending p;
  p.output = input_grad;
  const absl::Status s = inner().BackwardInput(chunk, mb, grad, &p.result);
  return Held(s, std::move(p));
}

absl::Status LaterCompletionWork::BackwardWeights(int chunk, int mb) {
  return Held(inner().BackwardWeights(chunk, mb), Pending{});
}

absl::Status LaterCompletionWork::Backward(int chunk, int mb, const runtime::Payload* grad,
                                           runtime::Payload* input_grad) {
  Pending p;
  p.output = input_grad;
  const absl::Status s = inner().Backward(chunk, mb, grad, &p.result);
  return Held(s, std::move(p));
}

void LaterCompletionWork::OnComplete(Completion done) {
  Pending pending = last_ ? std::move(*last_) : Pending{};
  last_.reset();
  pending.done = std::move(done);
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(pending));
  }
  cv_.notify_one();
}

int LaterCompletionWork::completed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return completed_;
}

void LaterCompletionWork::Loop() {
  for (;;) {
    Pending p;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      p = std::move(queue_.front());
      queue_.pop_front();
    }
    // The made-up device runs the action now, for `delay`.
    const int64_t begin = runtime::trace::NowNanos();
    std::this_thread::sleep_for(delay_);
    if (p.output != nullptr) *p.output = std::move(p.result);
    if (p.loss_out != nullptr) *p.loss_out = p.loss;
    const int64_t end = runtime::trace::NowNanos();
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++completed_;
    }
    p.done(absl::OkStatus(), begin, end);
  }
}

}  // namespace stagehand::testing
