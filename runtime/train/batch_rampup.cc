// Megatron's batch-size ramp-up formula, written for Stagehand's steps.
#include "runtime/train/batch_rampup.h"

#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace stagehand::runtime {

absl::StatusOr<BatchRampup> BatchRampupFromFlag(const std::string& text) {
  const std::vector<std::string> parts = absl::StrSplit(text, ',');
  BatchRampup r;
  if (parts.size() != 3 || !absl::SimpleAtoi(parts[0], &r.start) ||
      !absl::SimpleAtoi(parts[1], &r.increment) || !absl::SimpleAtoi(parts[2], &r.samples)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--rampup_batch_size=", text,
                     ": want START,INCREMENT,SAMPLES (three integers: the first "
                     "global batch in sequences, its increment, the samples the ramp-up takes)"));
  }
  if (r.start <= 0 || r.increment <= 0 || r.samples <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--rampup_batch_size=", text, ": START, INCREMENT and SAMPLES must be positive"));
  }
  return r;
}

absl::StatusOr<MicrobatchCalculator> MicrobatchCalculator::Create(
    int64_t global_batch, int micro_batch_size, int data_parallel,
    std::optional<BatchRampup> rampup) {
  MicrobatchCalculator c;
  c.global_batch_ = global_batch;
  c.per_microbatch_ = int64_t{micro_batch_size} * data_parallel;
  if (global_batch <= 0 || c.per_microbatch_ <= 0 || global_batch % c.per_microbatch_ != 0) {
    return absl::InvalidArgumentError(absl::StrCat("global batch ", global_batch,
                                                   " is not a positive multiple of ",
                                                   c.per_microbatch_, " sequences per microbatch"));
  }
  if (!rampup.has_value()) return c;
  const int64_t diff = global_batch - rampup->start;
  if (diff < 0 || diff % rampup->increment != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--rampup_batch_size: the full global batch (--microbatches x --micro_batch_size",
        data_parallel > 1 ? " x --dp" : "", " = ", global_batch, ") minus START (", rampup->start,
        ") must be a non-negative multiple of INCREMENT (", rampup->increment, ")"));
  }
  for (int64_t batch = rampup->start; batch <= global_batch; batch += rampup->increment) {
    if (batch % c.per_microbatch_ != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--rampup_batch_size: the global batch ", batch,
          " on the way is not a multiple of --micro_batch_size", data_parallel > 1 ? " x --dp" : "",
          " (", c.per_microbatch_, "): it cannot be cut into microbatches"));
    }
  }
  if (diff == 0) return c;  // START is the full batch: constant
  c.rampup_ = rampup;
  c.samples_per_increment_ = double(rampup->samples) / double(diff / rampup->increment);
  return c;
}

int64_t MicrobatchCalculator::GlobalBatch(int64_t consumed) const {
  if (!rampup_.has_value() || consumed > rampup_->samples) return global_batch_;
  const int64_t increments = static_cast<int64_t>(double(consumed) / samples_per_increment_);
  return rampup_->start + increments * rampup_->increment;
}

int MicrobatchCalculator::Microbatches(int64_t consumed) const {
  return static_cast<int>(GlobalBatch(consumed) / per_microbatch_);
}

int64_t MicrobatchCalculator::ConsumedBefore(int64_t step) const {
  if (step <= 1) return 0;
  if (consumed_.empty()) consumed_.push_back(0);
  while (static_cast<int64_t>(consumed_.size()) < step) {
    consumed_.push_back(consumed_.back() + GlobalBatch(consumed_.back()));
  }
  return consumed_[step - 1];
}

std::vector<int64_t> MicrobatchCalculator::FirstMicrobatches(int64_t steps,
                                                             int micro_batch_size) const {
  std::vector<int64_t> first;
  for (int64_t step = 0; step <= steps + 1; ++step) {
    first.push_back(ConsumedBefore(step) / micro_batch_size);
  }
  return first;
}

std::vector<int> MicrobatchCalculator::DistinctMicrobatches(int64_t steps) const {
  std::set<int> distinct;
  for (int64_t s = 1; s <= steps; ++s) {
    distinct.insert(MicrobatchesOfStep(s));
    if (ConsumedBefore(s) > (rampup_ ? rampup_->samples : 0)) break;  // full from here on
  }
  return {distinct.begin(), distinct.end()};
}

}  // namespace stagehand::runtime
