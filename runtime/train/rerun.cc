// The rerun state machine's checks and verdicts.
#include "runtime/train/rerun.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace stagehand::runtime {
namespace {

// A gradient counts as non-finite when its squared norm is not a finite float32: an fp32
// global norm (as Megatron computes it) would be Inf. A flipped exponent bit lands here.
bool BadSquaredNorm(double squared) { return !(squared <= double{FLT_MAX}); }

uint64_t Bits(double x) {
  uint64_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}

double Mean(const std::vector<double>& v) {
  double sum = 0.0;
  for (double x : v) sum += x;
  return v.empty() ? 0.0 : sum / v.size();
}

}  // namespace

absl::StatusOr<OnBadStep> OnBadStepFromName(const std::string& name) {
  if (name == "stop") return OnBadStep::kStop;
  if (name == "skip") return OnBadStep::kSkip;
  return absl::InvalidArgumentError(absl::StrCat(
      "--on_bad_step=", name, ": want stop (report and stop) or skip (skip the batch)"));
}

std::vector<uint64_t> AttemptBits(const StepAttempt& attempt) {
  std::vector<uint64_t> bits;
  for (double loss : attempt.losses) bits.push_back(Bits(loss));
  for (const TensorNorm& n : attempt.norms) bits.push_back(Bits(n.squared));
  return bits;
}

RerunStateMachine::RerunStateMachine(RerunOptions options, std::vector<int> stage_rank)
    : options_(options), stage_rank_(std::move(stage_rank)) {}

void RerunStateMachine::SeedHistory(const std::vector<double>& losses) {
  history_.clear();
  for (double loss : losses) {
    if (std::isfinite(loss)) history_.push_back(loss);  // skipped steps left no update
  }
  const size_t window = static_cast<size_t>(std::max(options_.spike_window, 1));
  if (history_.size() > window) history_.erase(history_.begin(), history_.end() - window);
}

int RerunStateMachine::RankOf(int stage) const {
  return stage >= 0 && stage < static_cast<int>(stage_rank_.size()) ? stage_rank_[stage] : 0;
}

double RerunStateMachine::Median() const {
  std::vector<double> v = history_;
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  double median = v[v.size() / 2];
  if (v.size() % 2 == 0) {
    median = (median + *std::max_element(v.begin(), v.begin() + v.size() / 2)) / 2;
  }
  return median;
}

std::string RerunStateMachine::Diagnose(int64_t step, const StepAttempt& attempt,
                                        int* stage) const {
  std::vector<int> bad_microbatches;
  for (size_t mb = 0; mb < attempt.losses.size(); ++mb) {
    if (!std::isfinite(attempt.losses[mb])) bad_microbatches.push_back(static_cast<int>(mb));
  }
  const TensorNorm* first_bad = nullptr;
  for (const TensorNorm& n : attempt.norms) {
    if (BadSquaredNorm(n.squared)) {
      first_bad = &n;
      break;
    }
  }
  std::vector<std::string> parts;
  *stage = attempt.loss_stage;
  if (!bad_microbatches.empty()) {
    parts.push_back(
        absl::StrCat("non-finite loss in microbatch", bad_microbatches.size() > 1 ? "es " : " ",
                     absl::StrJoin(bad_microbatches, ", "), " (stage ", attempt.loss_stage, ")"));
  }
  if (first_bad != nullptr) {
    *stage = first_bad->stage;
    parts.push_back(absl::StrFormat(
        "first non-finite gradient %s of chunk %d on stage %d (rank %d, squared norm %g)",
        first_bad->name, first_bad->chunk, first_bad->stage, RankOf(first_bad->stage),
        first_bad->squared));
  }
  const double loss = Mean(attempt.losses);
  if (parts.empty() && options_.spike_factor > 0 &&
      static_cast<int>(history_.size()) >= std::max(options_.spike_min_history, 1)) {
    const double median = Median();
    if (loss > options_.spike_factor * median) {
      parts.push_back(absl::StrFormat("loss spike %.6f > --spike_factor=%g x running median %.6f",
                                      loss, options_.spike_factor, median));
    }
  }
  if (parts.empty()) return "";
  return absl::StrCat("step ", step, ": ", absl::StrJoin(parts, "; "));
}

void RerunStateMachine::Applied(const StepAttempt& attempt) {
  history_.push_back(Mean(attempt.losses));
  if (static_cast<int>(history_.size()) > std::max(options_.spike_window, 1)) {
    history_.erase(history_.begin());
  }
}

RerunDecision RerunStateMachine::Check(int64_t step, const StepAttempt& attempt) {
  if (!options_.enabled) {
    Applied(attempt);
    return {StepVerdict::kApply, ""};
  }
  if (step != step_) {
    step_ = step;
    attempts_ = 0;
  }
  ++attempts_;
  int stage = 0;
  const std::string problem = Diagnose(step, attempt, &stage);
  if (attempts_ == 1) {
    if (problem.empty()) {
      Applied(attempt);
      return {StepVerdict::kApply, ""};
    }
    first_bits_ = AttemptBits(attempt);
    first_problem_ = problem;
    first_stage_ = stage;
    return {StepVerdict::kRerun,
            absl::StrCat("rerun: ", problem, "; running step ", step, " again with the same data")};
  }
  if (AttemptBits(attempt) == first_bits_) return Persistent(step, first_problem_);
  if (problem.empty()) return Transient(step, attempt, first_problem_);
  if (attempts_ < options_.max_attempts) {
    return {StepVerdict::kRerun, absl::StrCat("rerun: run ", attempts_,
                                              " differs from the first and is bad too: ", problem,
                                              "; running step ", step, " again")};
  }
  return Persistent(step, absl::StrCat(problem, " (", attempts_, " runs, all bad)"));
}

RerunDecision RerunStateMachine::Persistent(int64_t step, const std::string& problem) {
  if (options_.on_bad_step == OnBadStep::kSkip) {
    return {StepVerdict::kSkip,
            absl::StrCat("rerun: persistent fault, the rerun reproduced it: ", problem,
                         "; skipped the batch of step ", step, " (no update)")};
  }
  return {StepVerdict::kStop, absl::StrCat("persistent fault, the rerun reproduced it: ", problem,
                                           ". The optimizer did not apply step ", step,
                                           "; --on_bad_step=skip would skip the batch")};
}

RerunDecision RerunStateMachine::Transient(int64_t step, const StepAttempt& attempt,
                                           const std::string& problem) {
  const int rank = RankOf(first_stage_);
  const int count = ++transient_[rank];
  Applied(attempt);
  std::string message = absl::StrFormat(
      "rerun: transient fault on rank %d (stage %d): %s; run %d of step %d is healthy and kept "
      "(rank %d: %d transient fault%s)",
      rank, first_stage_, problem, attempts_, step, rank, count, count > 1 ? "s" : "");
  if (count > options_.max_transient) {
    absl::StrAppend(&message, "; rank ", rank, " is over --max_transient=", options_.max_transient,
                    ": its device is flaky, take it out of service");
  }
  return {StepVerdict::kApply, message};
}

}  // namespace stagehand::runtime
