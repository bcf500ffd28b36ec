// SlowStageWork: a StageWork that runs another and then stays busy for (factor - 1) times the
// time each compute action (F, I, W, B) really took: a synthetic straggler for --slow_stage,
// proportional to the measured compute, never a fixed or made-up time.
// Not a sleep (the lane stays busy as a slow device would) and not applied to the optimizer.
#ifndef STAGEHAND_RUNTIME_TRAIN_SLOW_STAGE_WORK_H_
#define STAGEHAND_RUNTIME_TRAIN_SLOW_STAGE_WORK_H_

#include <map>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "runtime/train/stage_work.h"

namespace stagehand::runtime {

// --slow_stage=S:FACTOR: stage S computes FACTOR (>= 1) times as long. stage -1: none.
struct SlowStage {
  int stage = -1;
  double factor = 1;
};

// "" -> none; "S:FACTOR" -> the slow stage. InvalidArgument naming --slow_stage otherwise,
// or when S is not in [0, num_stages) or FACTOR is not a finite number >= 1.
absl::StatusOr<SlowStage> ParseSlowStage(absl::string_view text, int num_stages);

class SlowStageWork : public StageWork {
 public:
  SlowStageWork(std::unique_ptr<StageWork> inner, double factor);
  void BeginStep(int64_t step, int num_microbatches) override {
    inner_->BeginStep(step, num_microbatches);
  }
  absl::Status Forward(int chunk, int mb, const Payload* input, Payload* output,
                       double* loss) override;
  absl::Status BackwardInput(int chunk, int mb, const Payload* grad, Payload* input_grad) override;
  absl::Status BackwardWeights(int chunk, int mb) override;
  absl::Status Backward(int chunk, int mb, const Payload* grad, Payload* input_grad) override;
  TiedGradientMap TiedGradients() override { return inner_->TiedGradients(); }
  void SetTiedGradients(const TiedGradientMap& sums) override { inner_->SetTiedGradients(sums); }
  std::map<int, std::vector<double>> SquaredNorms() override { return inner_->SquaredNorms(); }
  std::map<int, int64_t> GradientFloats() const override { return inner_->GradientFloats(); }
  GradPartLayout GradientParts() const override { return inner_->GradientParts(); }
  void SetGradientProgress(GradientProgress progress) override {
    inner_->SetGradientProgress(std::move(progress));
  }
  absl::Status ReduceGradients(const GradBucket& bucket) override {
    return inner_->ReduceGradients(bucket);
  }
  void ApplyOptimizer(double clip_scale, int step) override {
    inner_->ApplyOptimizer(clip_scale, step);
  }
  std::map<int, std::vector<std::string>> GradientNames() override {
    return inner_->GradientNames();
  }
  void DiscardGradients() override { inner_->DiscardGradients(); }
  double TakeDataSeconds() override { return inner_->TakeDataSeconds(); }

  // Seconds spent busy beyond the inner work so far.
  double stretched_seconds() const { return stretched_seconds_; }

 private:
  // Runs `compute`, then spins for (factor - 1) times its duration.
  template <typename Compute>
  absl::Status Stretch(Compute compute);

  std::unique_ptr<StageWork> inner_;
  double factor_;
  double stretched_seconds_ = 0;
};

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_TRAIN_SLOW_STAGE_WORK_H_
