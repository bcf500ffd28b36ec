// SlowStageWork: measured compute, stretched by a busy wait.
// Not a cost model: the extra time is a multiple of what the real work took.
#include "runtime/train/slow_stage_work.h"

#include <chrono>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace stagehand::runtime {

absl::StatusOr<SlowStage> ParseSlowStage(absl::string_view text, int num_stages) {
  SlowStage slow;
  if (text.empty()) return slow;
  const std::vector<std::string> parts = absl::StrSplit(text, ':');
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &slow.stage) ||
      !absl::SimpleAtod(parts[1], &slow.factor)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--slow_stage=", text, ": want S:FACTOR, e.g. 2:1.5"));
  }
  if (slow.stage < 0 || slow.stage >= num_stages) {
    return absl::InvalidArgumentError(absl::StrCat("--slow_stage=", text, ": stage ", slow.stage,
                                                   " is not in [0, --stages = ", num_stages, ")"));
  }
  if (!std::isfinite(slow.factor) || slow.factor < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--slow_stage=", text, ": FACTOR must be a number >= 1"));
  }
  return slow;
}

SlowStageWork::SlowStageWork(std::unique_ptr<StageWork> inner, double factor)
    : ForwardingStageWork(std::move(inner)), factor_(factor) {}

template <typename Compute>
absl::Status SlowStageWork::Stretch(Compute compute) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point begin = Clock::now();
  absl::Status status = compute();
  const Clock::time_point end = Clock::now();
  const auto extra = std::chrono::duration_cast<Clock::duration>((end - begin) * (factor_ - 1));
  while (Clock::now() < end + extra) {
  }
  stretched_seconds_ += std::chrono::duration<double>(Clock::now() - end).count();
  return status;
}

absl::Status SlowStageWork::Forward(int chunk, int mb, const Payload* input, Payload* output,
                                    double* loss) {
  return Stretch([&] { return inner().Forward(chunk, mb, input, output, loss); });
}

absl::Status SlowStageWork::BackwardInput(int chunk, int mb, const Payload* grad,
                                          Payload* input_grad) {
  return Stretch([&] { return inner().BackwardInput(chunk, mb, grad, input_grad); });
}

absl::Status SlowStageWork::BackwardWeights(int chunk, int mb) {
  return Stretch([&] { return inner().BackwardWeights(chunk, mb); });
}

absl::Status SlowStageWork::Backward(int chunk, int mb, const Payload* grad, Payload* input_grad) {
  return Stretch([&] { return inner().Backward(chunk, mb, grad, input_grad); });
}

absl::Status SlowStageWork::RunSubStep(const SubStepOrder& order, const Payload* input,
                                       Payload* output, double* loss) {
  if (order.lane() != SubStepLane::kCompute) {  // dispatch / combine: the link, not compute
    return inner().RunSubStep(order, input, output, loss);
  }
  return Stretch([&] { return inner().RunSubStep(order, input, output, loss); });
}

}  // namespace stagehand::runtime
