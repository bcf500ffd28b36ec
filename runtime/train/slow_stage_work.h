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
#include "runtime/train/forwarding_stage_work.h"
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

// Stretches this stage's compute (whole actions, and the compute lane's sub-steps); every other
// call goes to the inner work unchanged (ForwardingStageWork).
class SlowStageWork : public ForwardingStageWork {
 public:
  SlowStageWork(std::unique_ptr<StageWork> inner, double factor);
  absl::Status Forward(int chunk, int mb, const Payload* input, Payload* output,
                       double* loss) override;
  absl::Status BackwardInput(int chunk, int mb, const Payload* grad, Payload* input_grad) override;
  absl::Status BackwardWeights(int chunk, int mb) override;
  absl::Status Backward(int chunk, int mb, const Payload* grad, Payload* input_grad) override;
  absl::Status RunSubStep(const SubStepOrder& order, const Payload* input, Payload* output,
                          double* loss) override;

  // Seconds spent busy beyond the inner work so far.
  double stretched_seconds() const { return stretched_seconds_; }

 private:
  // Runs `compute`, then spins for (factor - 1) times its duration.
  template <typename Compute>
  absl::Status Stretch(Compute compute);

  double factor_;
  double stretched_seconds_ = 0;
};

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_TRAIN_SLOW_STAGE_WORK_H_
