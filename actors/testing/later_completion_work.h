// LaterCompletionWork: a stage work whose compute actions complete after the call, on a thread
// of its own, as a GPU stream's do (runtime::StageWork::CompletesLater): for testing on the CPU
// what the actor runtime does with such a work. The inner work computes in the call, but the
// caller's results are written only when the completion runs, after `delay` of made-up device
// time, so a runtime that read them early would see nothing. Test-only.
#ifndef STAGEHAND_ACTORS_TESTING_LATER_COMPLETION_WORK_H_
#define STAGEHAND_ACTORS_TESTING_LATER_COMPLETION_WORK_H_

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime/train/forwarding_stage_work.h"
#include "runtime/train/stage_work.h"

namespace stagehand::testing {

class LaterCompletionWork : public runtime::ForwardingStageWork {
 public:
  LaterCompletionWork(std::unique_ptr<runtime::StageWork> inner, std::chrono::microseconds delay);
  ~LaterCompletionWork() override;  // runs what is queued, then joins

  bool CompletesLater() const override { return true; }
  void OnComplete(Completion done) override;
  // The compute calls: the inner work's, with results held back until completion. Every other
  // call is the inner work's (ForwardingStageWork).
  absl::Status Forward(int chunk, int mb, const runtime::Payload* input, runtime::Payload* output,
                       double* loss) override;
  absl::Status BackwardInput(int chunk, int mb, const runtime::Payload* grad,
                             runtime::Payload* input_grad) override;
  absl::Status BackwardWeights(int chunk, int mb) override;
  absl::Status Backward(int chunk, int mb, const runtime::Payload* grad,
                        runtime::Payload* input_grad) override;

  // Completions run so far.
  int completed() const;

 private:
  // A call's results, held until its completion writes them to the caller's.
  struct Pending {
    runtime::Payload result;
    double loss = 0;
    runtime::Payload* output = nullptr;  // the caller's; null: none
    double* loss_out = nullptr;
    Completion done;
  };
  absl::Status Held(const absl::Status& status, Pending pending);
  void Loop();

  std::chrono::microseconds delay_;
  std::unique_ptr<Pending> last_;  // the last call's, until OnComplete takes it
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_;
  bool stopping_ = false;
  int completed_ = 0;
  std::thread thread_;
};

}  // namespace stagehand::testing

#endif  // STAGEHAND_ACTORS_TESTING_LATER_COMPLETION_WORK_H_
