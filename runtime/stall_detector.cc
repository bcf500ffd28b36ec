// StallDetector: stall decisions from stage progress reports, confirmed by a probe wave.
// Not the probes themselves: the step driver sends them.
#include "runtime/stall_detector.h"

#include "absl/strings/str_cat.h"

namespace stagehand::runtime {

void StallDetector::Reset(int64_t step) {
  step_ = step;
  latest_.clear();
  snapshot_.clear();
  replies_.clear();
}

bool StallDetector::LooksStalled(const std::map<int, StageProgress>& reports) const {
  if (static_cast<int>(reports.size()) < num_stages_) return false;
  int64_t sent = 0, received = 0;
  bool any_blocked = false;
  for (const auto& [stage, p] : reports) {
    if (!p.done && !p.blocked) return false;
    any_blocked |= p.blocked;
    sent += p.sent;
    received += p.received;
  }
  return any_blocked && sent == received;
}

std::optional<int> StallDetector::OnReport(const StageProgress& progress) {
  latest_[progress.stage] = progress;
  if (!LooksStalled(latest_)) return std::nullopt;
  // Confirm with a second wave: the same counters, still blocked, means no progress.
  snapshot_ = latest_;
  replies_.clear();
  return ++wave_;
}

std::optional<std::string> StallDetector::OnProbeReply(int wave, const StageProgress& progress) {
  if (wave != wave_) return std::nullopt;
  replies_[progress.stage] = progress;
  if (static_cast<int>(replies_.size()) < num_stages_) return std::nullopt;
  if (!LooksStalled(replies_)) return std::nullopt;
  for (const auto& [stage, p] : replies_) {
    const auto before = snapshot_.find(stage);
    if (before == snapshot_.end() || before->second.sent != p.sent ||
        before->second.received != p.received) {
      return std::nullopt;
    }
  }
  std::string report = absl::StrCat(
      "step ", step_, " stalled: no stage can run anything and no tensor is in flight");
  for (const auto& [stage, p] : replies_) {
    if (!p.done) absl::StrAppend(&report, "\n  ", p.waiting);
  }
  return report;
}

}  // namespace stagehand::runtime
