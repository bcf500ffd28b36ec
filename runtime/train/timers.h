// Phase timers (--log_timers), as Megatron's timers print them: over the steps since the last
// report, each phase's time summed over the pipeline's stages, with its min and max over the
// stages (a pipeline stage is a Megatron rank), and the stages whose time in a phase is an
// outlier (> factor x the median): stragglers. Thread-free accounting and text; not a clock:
// the stage actors measure, the launcher reports.
#ifndef STAGEHAND_RUNTIME_TRAIN_TIMERS_H_
#define STAGEHAND_RUNTIME_TRAIN_TIMERS_H_

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

namespace stagehand::runtime {

enum class TimerPhase {
  kForward,         // F actions on the stage's lane (data loading included)
  kBackwardInput,   // I actions, and fused B actions (I and W in one)
  kBackwardWeight,  // W actions
  // Lane idle while the input of the action it ran next was in flight: its producer had
  // handed it to a transfer lane (had finished computing it) and it had not arrived yet
  // (ExposedTransferWait). Measured per action by the stage (TransferWaitClock).
  kTransfersExposed,
  kIdle,         // bubble: the step's wall time minus the stage's lane time and transfers exposed
                 // (the producer was still computing, or the stage had nothing it could run)
  kOptimizer,    // tied-gradient sum, norms and AdamW (or a discard) on the lane
  kDataLoading,  // building the batch of the stage's first chunk (part of forward)
  kEvaluation,   // held-out evaluation (the launcher's; on the stage holding chunk 0)
};
inline constexpr int kNumTimerPhases = 8;
inline constexpr double kMinStragglerExcessSeconds = 0.005;

// "forward", "backward-input", ... as the report prints them.
const char* TimerPhaseName(TimerPhase phase);

// Seconds per phase, indexed by TimerPhase.
using PhaseSeconds = std::array<double, kNumTimerPhases>;

// Of a compute lane's idle time from `idle_begin` until it started an action at `started`, the
// part spent waiting for that action's input while it was in flight: from the later of the
// idle's begin and the input's hand-off to a transfer lane (`handed_off`: its producer had
// finished computing it) until it `arrived`. Zero when the input arrived before the lane went
// idle, or was handed off after it arrived (unknown hand-off). Any unit, one clock.
// The rest of the idle time is bubble: the producer was still computing, or nothing was ready.
double ExposedTransferWait(double idle_begin, double started, double handed_off, double arrived);

// A stage's transfers-exposed time over one run of a step, as the stage actor sees it: the
// lane went free, inputs arrived (with their hand-off times), the lane started an action.
// Each action counts the exposed wait of its one transferred input (an F its activation, an
// I or B its gradient; a W none). Thread-free; every time in steady-clock nanoseconds.
class TransferWaitClock {
 public:
  // A new run of a step begins at `now_ns` with the lane free; clears the sum.
  void StepStarted(int64_t now_ns);
  // The lane finished an action at `end_ns` (the lane's own end time).
  void LaneFreed(int64_t end_ns);
  // A transferred input of (gradient ? I/B : F) of (chunk, microbatch) arrived.
  void InputArrived(bool gradient, int chunk, int microbatch, int64_t handed_off_ns,
                    int64_t arrived_ns);
  // The lane starts an action of `gradient_input` kind (I or B: true; F: false) of (chunk,
  // microbatch) at `now_ns`; `has_input` false for W (no transferred input).
  void Started(bool has_input, bool gradient_input, int chunk, int microbatch, int64_t now_ns);
  double seconds() const { return 1e-9 * static_cast<double>(exposed_ns_); }

 private:
  struct Arrival {
    int64_t handed_off_ns = 0, arrived_ns = 0;
  };
  int64_t idle_begin_ns_ = 0;
  int64_t exposed_ns_ = 0;
  std::map<std::tuple<bool, int, int>, Arrival> arrivals_;
};

// Data parallelism: every replica's per-stage seconds (`per_replica[d][s]`, as each replica's
// step reports them) in the grid's rank order, the entries of PhaseTimers::Grid: rank
// s x D + d is replica d's stage s. A replica with fewer stages leaves its ranks empty.
std::vector<std::vector<double>> RankOrder(
    const std::vector<std::vector<std::vector<double>>>& per_replica);

class PhaseTimers {
 public:
  // `stage_rank`: the rank of each stage (its size is the stage count).
  explicit PhaseTimers(std::vector<int> stage_rank);
  // Data parallelism (--dp=D): every stage of every replica, one entry per rank of the grid
  // in rank order (rank r is replica r % D's stage r / D: dp varies fastest,
  // runtime/grid/rank_grid.h); the report sums over the D x P ranks, gives min and max over
  // them and names stragglers by rank, replica and stage. D == 1: PhaseTimers({0, ..., 0}).
  static PhaseTimers Grid(int replicas, int stages);

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
  int replicas_ = 1;  // > 1: entries are the grid's ranks (Grid)
  std::vector<PhaseSeconds> per_stage_;
};

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_TRAIN_TIMERS_H_
