// ProgressBar: an exponential moving average of step time drives the rate and the ETA.
#include "runtime/io/progress.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"

namespace stagehand::runtime {

std::string FormatDuration(double seconds) {
  const int64_t s = static_cast<int64_t>(std::llround(std::max(0.0, seconds)));
  if (s >= 3600) return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
  if (s >= 60) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%ds", s);
}

ProgressBar::ProgressBar(int64_t first_step, int64_t total_steps, double tokens_per_step, int width)
    : first_(first_step),
      total_(total_steps),
      step_(first_step),
      tokens_per_step_(tokens_per_step),
      width_(width) {}

void ProgressBar::Update(int64_t step, double seconds, double loss) {
  const int64_t done = step - first_;
  average_ = done <= 1 ? seconds : 0.9 * average_ + 0.1 * seconds;
  step_ = step, loss_ = loss;
  seconds_ += seconds;
}

double ProgressBar::eta_seconds() const { return average_ * double(total_ - step_); }

double ProgressBar::tokens_per_second() const {
  return average_ > 0 ? tokens_per_step_ / average_ : 0.0;
}

std::string ProgressBar::Line() const {
  const int filled = total_ > 0 ? static_cast<int>(width_ * step_ / total_) : width_;
  std::string bar(std::clamp(filled, 0, width_), '#');
  bar.resize(width_, '.');
  const double rate = tokens_per_second();
  const std::string tokens =
      rate >= 1e4 ? absl::StrFormat("%.1fk", rate / 1e3) : absl::StrFormat("%.0f", rate);
  return absl::StrFormat("[%s] %d/%d loss %.4f | %s tok/s | ETA %s", bar, step_, total_, loss_,
                         tokens, FormatDuration(eta_seconds()));
}

}  // namespace stagehand::runtime
