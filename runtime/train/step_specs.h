// The step graph of every step of a run. Constant for most runs; under a batch-size ramp-up
// (batch_rampup.h) one StepSpec per distinct M, all with the same stages and chunks, chosen
// by the step. Built once, before the first step, and immutable after: the stage actors and
// the stage gates of every thread read it without locks. The one place a stage learns its
// step's M, in one process and in the cluster alike.
#ifndef STAGEHAND_RUNTIME_TRAIN_STEP_SPECS_H_
#define STAGEHAND_RUNTIME_TRAIN_STEP_SPECS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/planner.h"
#include "runtime/step_spec.h"
#include "runtime/train/batch_rampup.h"

namespace stagehand::runtime {

class StepSpecs {
 public:
  // One spec for every step.
  static StepSpecs Constant(StepSpec spec);
  // `options` with the full M; `microbatches` gives each step's M. Every M the ramp-up
  // reaches gets planner.MakeSpec; InvalidArgument naming the M when the planner refuses
  // it or lays out stages or chunks differently from the full M's spec.
  static absl::StatusOr<StepSpecs> Create(const PlannerDefinition& planner,
                                          const PlannerOptions& options,
                                          const MicrobatchCalculator& microbatches);

  // The spec of step `step` (1-based; steps past the ramp-up have the full M).
  const StepSpec& ForStep(int64_t step) const;
  // The full M's spec: the largest, whose microbatch count bounds every step's.
  const StepSpec& full() const { return by_m_.rbegin()->second; }
  // Every distinct M, ascending.
  std::vector<int> DistinctMicrobatches() const;
  bool ramping() const { return by_m_.size() > 1; }
  // Under a ramp-up, the line to print before step `step` when its M differs from the
  // previous step's or it is the run's `first_step`: "batch ramp-up: step 5 global batch 16
  // sequences (4 microbatches)"; with `data_parallel` replicas the global batch counts them all
  // and M is per replica. Empty otherwise.
  std::string RampLine(int64_t step, int64_t first_step, int micro_batch_size,
                       int data_parallel = 1) const;

 private:
  std::map<int, StepSpec> by_m_;
  std::vector<int> m_of_step_;  // m_of_step_[s - 1] for the steps of the ramp-up; then full
};

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_TRAIN_STEP_SPECS_H_
