// Phase timers (--log_timers), as Megatron's timers print them: over the steps since the last
// report, each phase's time summed over the pipeline's stages, with its min and max over the
// stages (a pipeline stage is a Megatron rank), and the stages whose time in a phase is an
// outlier (> factor x the median): stragglers. Thread-free accounting and text; not a clock:
// the stage actors measure, the launcher reports.
#ifndef STAGEHAND_RUNTIME_TRAIN_TIMERS_H_
#define STAGEHAND_RUNTIME_TRAIN_TIMERS_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace stagehand::runtime {

enum class TimerPhase {
  kForward,         // F actions on the stage's lane (data loading included)
  kBackwardInput,   // I actions, and fused B actions (I and W in one)
  kBackwardWeight,  // W actions
  kIdle,            // the step's wall time minus the stage's lane time: bubble and
                    // exposed transfers (the stage had nothing it could run)
  kOptimizer,       // tied-gradient sum, norms and AdamW (or a discard) on the lane
  kDataLoading,     // building the batch of the stage's first chunk (part of forward)
  kEvaluation,      // held-out evaluation (the launcher's; on the stage holding chunk 0)
};
inline constexpr int kNumTimerPhases = 7;
inline constexpr double kMinStragglerExcessSeconds = 0.005;

// "forward", "backward-input", ... as the report prints them.
const char* TimerPhaseName(TimerPhase phase);

// Seconds per phase, indexed by TimerPhase.
using PhaseSeconds = std::array<double, kNumTimerPhases>;

class PhaseTimers {
 public:
  // `stage_rank`: the rank of each stage (its size is the stage count).
  explicit PhaseTimers(std::vector<int> stage_rank);

  // Adds one stage's seconds in one phase.
  void Add(int stage, TimerPhase phase, double seconds);
  // Adds a step: per stage, seconds per phase.
  void AddStep(const std::vector<PhaseSeconds>& per_stage);
  // The report of steps `first_step` .. `last_step` (the time added since the last Reset):
  // a header, one line per phase "    forward ......: total (min, max)" in milliseconds, then a
  // line per straggler.
  std::vector<std::string> Report(int64_t first_step, int64_t last_step,
                                  double straggler_factor = 1.5) const;
  // "straggler: stage 2 (rank 0) forward 61.20 ms > 1.5 x median 30.10 ms", one per stage
  // and phase over `factor` x the median of that phase over the stages, and over it by more
  // than kMinStragglerExcessSeconds (sub-millisecond phases are noise, not stragglers).
  std::vector<std::string> Stragglers(double factor) const;
  // Seconds per phase summed over the stages.
  PhaseSeconds Totals() const;
  const std::vector<PhaseSeconds>& per_stage() const { return per_stage_; }
  void Reset();

 private:
  std::vector<int> stage_rank_;
  std::vector<PhaseSeconds> per_stage_;
};

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_TRAIN_TIMERS_H_
