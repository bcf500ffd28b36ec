// Batch-size ramp-up (--rampup_batch_size=START,INCREMENT,SAMPLES), as Megatron Core's
// RampupBatchsizeNumMicroBatchesCalculator: the global batch grows from START by INCREMENT
// over SAMPLES consumed samples to the full batch, so the number of microbatches per step
// grows with it. A pure function of the samples consumed (so of the step), hence exact
// across resume. Not a planner: callers re-plan and re-validate for each new M.
#ifndef STAGEHAND_RUNTIME_TRAIN_BATCH_RAMPUP_H_
#define STAGEHAND_RUNTIME_TRAIN_BATCH_RAMPUP_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace stagehand::runtime {

// Global batch sizes in samples (sequences).
struct BatchRampup {
  int64_t start = 0;
  int64_t increment = 0;
  int64_t samples = 0;
};

// "START,INCREMENT,SAMPLES" (three integers); InvalidArgument naming --rampup_batch_size.
absl::StatusOr<BatchRampup> BatchRampupFromFlag(const std::string& text);

class MicrobatchCalculator {
 public:
  // The full global batch `global_batch` = microbatches x `micro_batch_size` x
  // `data_parallel`; `rampup` absent: constant. InvalidArgument (naming the flags) when the
  // ramp-up does not fit: non-positive sizes, START above the full batch, (full - START) not a
  // multiple of INCREMENT, or a batch on the way not a multiple of micro_batch_size x
  // data_parallel (Megatron's consistency check, done here for every batch up front).
  static absl::StatusOr<MicrobatchCalculator> Create(int64_t global_batch, int micro_batch_size,
                                                     int data_parallel,
                                                     std::optional<BatchRampup> rampup);

  // The global batch after `consumed` samples (Megatron's update(consumed_samples)).
  int64_t GlobalBatch(int64_t consumed) const;
  // Microbatches per data-parallel rank after `consumed` samples.
  int Microbatches(int64_t consumed) const;
  // Samples consumed before step `step` (1-based): steps 1 .. step-1's global batches.
  int64_t ConsumedBefore(int64_t step) const;
  // Microbatches of step `step`.
  int MicrobatchesOfStep(int64_t step) const { return Microbatches(ConsumedBefore(step)); }
  // Every distinct microbatch count of steps 1 .. `steps`, ascending.
  std::vector<int> DistinctMicrobatches(int64_t steps) const;
  bool ramping() const { return rampup_.has_value(); }
  // The data position of steps 0 .. `steps` + 1 in microbatches of `micro_batch_size`: the
  // first microbatch of each step in the data order (WindowSampler::SetFirstMicrobatches).
  std::vector<int64_t> FirstMicrobatches(int64_t steps, int micro_batch_size) const;

 private:
  MicrobatchCalculator() = default;
  int64_t global_batch_ = 0;
  int64_t per_microbatch_ = 1;  // micro_batch_size x data_parallel
  std::optional<BatchRampup> rampup_;
  double samples_per_increment_ = 0;
  mutable std::vector<int64_t> consumed_;  // consumed_[s - 1]: before step s (grown on demand)
};

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_TRAIN_BATCH_RAMPUP_H_
