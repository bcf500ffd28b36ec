// Phase timers: sums, min/max over stages, stragglers, report lines.
#include "runtime/train/timers.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace stagehand::runtime {
namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace

const char* TimerPhaseName(TimerPhase phase) {
  switch (phase) {
    case TimerPhase::kForward:
      return "forward";
    case TimerPhase::kBackwardInput:
      return "backward-input";
    case TimerPhase::kBackwardWeight:
      return "backward-weight";
    case TimerPhase::kTransfersExposed:
      return "transfers exposed";
    case TimerPhase::kIdle:
      return "idle (bubble)";
    case TimerPhase::kOptimizer:
      return "optimizer";
    case TimerPhase::kDataLoading:
      return "data loading";
    case TimerPhase::kEvaluation:
      return "evaluation";
  }
  return "?";
}

double ExposedTransferWait(double idle_begin, double started, double handed_off, double arrived) {
  return std::max(0.0, std::min(arrived, started) - std::max(idle_begin, handed_off));
}

void TransferWaitClock::StepStarted(int64_t now_ns) {
  idle_begin_ns_ = now_ns;
  exposed_ns_ = 0;
  arrivals_.clear();
}

void TransferWaitClock::LaneFreed(int64_t end_ns) { idle_begin_ns_ = end_ns; }

void TransferWaitClock::InputArrived(bool gradient, int chunk, int microbatch,
                                     int64_t handed_off_ns, int64_t arrived_ns) {
  arrivals_[{gradient, chunk, microbatch}] = Arrival{handed_off_ns, arrived_ns};
}

void TransferWaitClock::Started(bool has_input, bool gradient_input, int chunk, int microbatch,
                                int64_t now_ns) {
  if (!has_input) return;
  auto it = arrivals_.find({gradient_input, chunk, microbatch});
  if (it == arrivals_.end()) return;  // from a chunk on the same stage: no transfer
  exposed_ns_ += static_cast<int64_t>(ExposedTransferWait(
      static_cast<double>(idle_begin_ns_), static_cast<double>(now_ns),
      static_cast<double>(it->second.handed_off_ns), static_cast<double>(it->second.arrived_ns)));
  arrivals_.erase(it);
}

PhaseTimers::PhaseTimers(std::vector<int> stage_rank)
    : stage_rank_(std::move(stage_rank)), per_stage_(stage_rank_.size(), PhaseSeconds{}) {}

std::vector<std::vector<double>> RankOrder(
    const std::vector<std::vector<std::vector<double>>>& per_replica) {
  const size_t D = per_replica.size();
  size_t P = 0;
  for (const auto& stages : per_replica) P = std::max(P, stages.size());
  std::vector<std::vector<double>> out(D * P);
  for (size_t d = 0; d < D; ++d) {
    for (size_t s = 0; s < per_replica[d].size(); ++s) out[s * D + d] = per_replica[d][s];
  }
  return out;
}

PhaseTimers PhaseTimers::Grid(int replicas, int stages) {
  if (replicas <= 1) return PhaseTimers(std::vector<int>(std::max(stages, 0), 0));
  std::vector<int> ranks(std::max(replicas * stages, 0));
  for (size_t r = 0; r < ranks.size(); ++r) ranks[r] = static_cast<int>(r);
  PhaseTimers timers(std::move(ranks));
  timers.replicas_ = replicas;
  return timers;
}

void PhaseTimers::Add(int stage, TimerPhase phase, double seconds) {
  if (stage < 0 || stage >= static_cast<int>(per_stage_.size())) return;
  per_stage_[stage][static_cast<int>(phase)] += seconds;
}

void PhaseTimers::AddStep(const std::vector<PhaseSeconds>& per_stage) {
  for (size_t s = 0; s < per_stage.size() && s < per_stage_.size(); ++s) {
    for (int p = 0; p < kNumTimerPhases; ++p) per_stage_[s][p] += per_stage[s][p];
  }
}

PhaseSeconds PhaseTimers::Totals() const {
  PhaseSeconds total{};
  for (const PhaseSeconds& stage : per_stage_) {
    for (int p = 0; p < kNumTimerPhases; ++p) total[p] += stage[p];
  }
  return total;
}

void PhaseTimers::Reset() { per_stage_.assign(per_stage_.size(), PhaseSeconds{}); }

std::vector<std::string> PhaseTimers::Stragglers(double factor) const {
  std::vector<std::string> out;
  if (per_stage_.size() < 2) return out;
  for (int p = 0; p < kNumTimerPhases; ++p) {
    std::vector<double> v;
    for (const PhaseSeconds& stage : per_stage_) v.push_back(stage[p]);
    const double median = Median(v);
    if (median <= 0) continue;
    for (size_t s = 0; s < v.size(); ++s) {
      if (v[s] > factor * median && v[s] - median > kMinStragglerExcessSeconds) {
        const std::string who =
            replicas_ > 1
                ? absl::StrFormat("rank %d (dp %d, pp %d)", s, s % replicas_, s / replicas_)
                : absl::StrFormat("stage %d (rank %d)", s, stage_rank_[s]);
        out.push_back(absl::StrFormat("straggler: %s %s %.2f ms > %g x median %.2f ms", who,
                                      TimerPhaseName(static_cast<TimerPhase>(p)), 1e3 * v[s],
                                      factor, 1e3 * median));
      }
    }
  }
  return out;
}

std::vector<std::string> PhaseTimers::Report(int64_t first_step, int64_t last_step,
                                             double straggler_factor) const {
  std::vector<std::string> lines = {
      replicas_ > 1
          ? absl::StrFormat(
                "timers (ms) steps %d-%d, summed over %d ranks (dp %d x pp %d; min, max over "
                "ranks):",
                first_step, last_step, per_stage_.size(), replicas_, per_stage_.size() / replicas_)
          : absl::StrFormat("timers (ms) steps %d-%d, summed over %d stages (min, max over stages):",
                            first_step, last_step, per_stage_.size())};
  const PhaseSeconds total = Totals();
  for (int p = 0; p < kNumTimerPhases; ++p) {
    double low = per_stage_.empty() ? 0 : per_stage_[0][p], high = low;
    for (const PhaseSeconds& stage : per_stage_) {
      low = std::min(low, stage[p]);
      high = std::max(high, stage[p]);
    }
    std::string name = absl::StrCat("    ", TimerPhaseName(static_cast<TimerPhase>(p)), " ");
    name.resize(std::max<size_t>(name.size(), 40), '.');
    lines.push_back(
        absl::StrFormat("%s: %.2f (%.2f, %.2f)", name, 1e3 * total[p], 1e3 * low, 1e3 * high));
  }
  for (std::string& s : Stragglers(straggler_factor)) lines.push_back(std::move(s));
  return lines;
}

}  // namespace stagehand::runtime
