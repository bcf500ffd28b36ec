// A one-line training progress bar: steps done, loss, tokens/s and the estimated time left.
// Not a logger: the caller decides where the line goes (a terminal redraws it with \r).
#ifndef STAGEHAND_RUNTIME_IO_PROGRESS_H_
#define STAGEHAND_RUNTIME_IO_PROGRESS_H_

#include <cstdint>
#include <string>

namespace stagehand::runtime {

// "4m05s", "1h02m", "37s".
std::string FormatDuration(double seconds);

// Tracks step times and formats "[#####.....] 120/3000 loss 2.3100 | 10.5k tok/s | ETA 4m12s".
class ProgressBar {
 public:
  // Steps first_step + 1 .. total_steps will be reported (first_step > 0 after a resume).
  ProgressBar(int64_t first_step, int64_t total_steps, double tokens_per_step, int width = 30);
  // Records that `step` finished, `seconds` after the previous one, with `loss`.
  void Update(int64_t step, double seconds, double loss);
  std::string Line() const;
  double eta_seconds() const;
  double tokens_per_second() const;

 private:
  int64_t first_, total_, step_;
  double tokens_per_step_;
  int width_;
  double seconds_ = 0, loss_ = 0, average_ = 0;  // average: smoothed step time
};

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_IO_PROGRESS_H_
