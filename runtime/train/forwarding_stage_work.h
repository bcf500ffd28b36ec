// ForwardingStageWork: a stage work that hands every call to an inner one, for wrappers that
// change a few calls (a slowed stage, a logging worker, a test double) and must pass the rest
// on: a wrapper derives from it and overrides only what it changes, so that a call added to
// StageWork, or one a wrapper forgot, still reaches the work that does it. Not a work itself.
#ifndef STAGEHAND_RUNTIME_TRAIN_FORWARDING_STAGE_WORK_H_
#define STAGEHAND_RUNTIME_TRAIN_FORWARDING_STAGE_WORK_H_

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "runtime/train/stage_work.h"

namespace stagehand::runtime {

class ForwardingStageWork : public StageWork {
 public:
  explicit ForwardingStageWork(std::unique_ptr<StageWork> inner) : inner_(std::move(inner)) {}

  void BeginStep(int64_t step, int num_microbatches) override {
    inner_->BeginStep(step, num_microbatches);
  }
  absl::Status Forward(int chunk, int mb, const Payload* input, Payload* output,
                       double* loss) override {
    return inner_->Forward(chunk, mb, input, output, loss);
  }
  absl::Status BackwardInput(int chunk, int mb, const Payload* grad, Payload* input_grad) override {
    return inner_->BackwardInput(chunk, mb, grad, input_grad);
  }
  absl::Status BackwardWeights(int chunk, int mb) override {
    return inner_->BackwardWeights(chunk, mb);
  }
  absl::Status Backward(int chunk, int mb, const Payload* grad, Payload* input_grad) override {
    return inner_->Backward(chunk, mb, grad, input_grad);
  }
  TiedGradientMap TiedGradients() override { return inner_->TiedGradients(); }
  void SetTiedGradients(const TiedGradientMap& sums) override { inner_->SetTiedGradients(sums); }
  std::map<int, std::vector<double>> SquaredNorms() override { return inner_->SquaredNorms(); }
  void ApplyOptimizer(double clip_scale, int step) override {
    inner_->ApplyOptimizer(clip_scale, step);
  }
  std::map<int, std::vector<std::string>> GradientNames() override {
    return inner_->GradientNames();
  }
  void DiscardGradients() override { inner_->DiscardGradients(); }
  double TakeDataSeconds() override { return inner_->TakeDataSeconds(); }
  std::map<int, int64_t> GradientFloats() const override { return inner_->GradientFloats(); }
  absl::Status ReduceGradients(const GradBucket& bucket) override {
    return inner_->ReduceGradients(bucket);
  }
  GradPartLayout GradientParts() const override { return inner_->GradientParts(); }
  void SetGradientProgress(GradientProgress progress) override {
    inner_->SetGradientProgress(std::move(progress));
  }
  absl::Status GatherLosses(std::vector<double>* losses) override {
    return inner_->GatherLosses(losses);
  }
  absl::Status ExportOptimizerState() override { return inner_->ExportOptimizerState(); }
  void ReleaseExportedOptimizerState() override { inner_->ReleaseExportedOptimizerState(); }
  int64_t OptimizerStateBytes() const override { return inner_->OptimizerStateBytes(); }
  SubStepLayout SubStepLayoutOf() const override { return inner_->SubStepLayoutOf(); }
  absl::Status RunSubStep(const SubStepOrder& order, const Payload* input, Payload* output,
                          double* loss) override {
    return inner_->RunSubStep(order, input, output, loss);
  }
  int64_t ActivationBytes(int chunk) const override { return inner_->ActivationBytes(chunk); }
  bool DeviceMemory(int64_t* in_use, int64_t* peak) const override {
    return inner_->DeviceMemory(in_use, peak);
  }
  bool CompletesLater() const override { return inner_->CompletesLater(); }
  void OnComplete(Completion done) override { inner_->OnComplete(std::move(done)); }

 protected:
  StageWork& inner() { return *inner_; }
  const StageWork& inner() const { return *inner_; }

 private:
  std::unique_ptr<StageWork> inner_;
};

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_TRAIN_FORWARDING_STAGE_WORK_H_
