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

#include "runtime/train/stage_work.h"

namespace stagehand::testing {

class LaterCompletionWork : public runtime::StageWork {
 public:
  LaterCompletionWork(std::unique_ptr<runtime::StageWork> inner, std::chrono::microseconds delay);
  ~LaterCompletionWork() override;  // runs what is queued, then joins

  bool CompletesLater() const override { return true; }
  void OnComplete(Completion done) override;
  // The compute calls: the inner work's, with results held back until completion.
  absl::Status Forward(int chunk, int mb, const runtime::Payload* input, runtime::Payload* output,
                       double* loss) override;
  absl::Status BackwardInput(int chunk, int mb, const runtime::Payload* grad,
                             runtime::Payload* input_grad) override;
  absl::Status BackwardWeights(int chunk, int mb) override;
  absl::Status Backward(int chunk, int mb, const runtime::Payload* grad,
                        runtime::Payload* input_grad) override;
  // Everything else is the inner work's.
  void BeginStep(int64_t step, int num_microbatches) override {
    inner_->BeginStep(step, num_microbatches);
  }
  runtime::TiedGradientMap TiedGradients() override { return inner_->TiedGradients(); }
  void SetTiedGradients(const runtime::TiedGradientMap& sums) override {
    inner_->SetTiedGradients(sums);
  }
  std::map<int, std::vector<double>> SquaredNorms() override { return inner_->SquaredNorms(); }
  void ApplyOptimizer(double clip_scale, int step) override {
    inner_->ApplyOptimizer(clip_scale, step);
  }
  std::map<int, std::vector<std::string>> GradientNames() override {
    return inner_->GradientNames();
  }
  void DiscardGradients() override { inner_->DiscardGradients(); }
  double TakeDataSeconds() override { return inner_->TakeDataSeconds(); }
  absl::Status ExportOptimizerState() override { return inner_->ExportOptimizerState(); }
  int64_t OptimizerStateBytes() const override { return inner_->OptimizerStateBytes(); }

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

  std::unique_ptr<runtime::StageWork> inner_;
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
