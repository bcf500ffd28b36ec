// The loss curve of a training run as a self-contained SVG picture: training loss per step
// (raw, and smoothed), held-out loss at its evaluation steps. Not a plotting library.
#ifndef STAGEHAND_RUNTIME_IO_LOSS_CURVE_H_
#define STAGEHAND_RUNTIME_IO_LOSS_CURVE_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace stagehand::runtime {

struct LossCurve {
  std::string title;
  std::vector<std::pair<int64_t, double>> train;       // (step, loss)
  std::vector<std::pair<int64_t, double>> validation;  // (step, loss)
};

std::string RenderLossCurveSvg(const LossCurve& curve);

// Writes the picture atomically (temporary name, rename).
absl::Status WriteLossCurveSvg(const std::string& path, const LossCurve& curve);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_IO_LOSS_CURVE_H_
