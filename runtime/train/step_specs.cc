#include "runtime/train/step_specs.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace stagehand::runtime {
namespace {
constexpr int64_t kMaxRampSteps = 10'000'000;
}  // namespace

StepSpecs StepSpecs::Constant(StepSpec spec) {
  StepSpecs specs;
  specs.by_m_[spec.num_microbatches] = std::move(spec);
  return specs;
}

absl::StatusOr<StepSpecs> StepSpecs::Create(const PlannerDefinition& planner,
                                            const PlannerOptions& options,
                                            const MicrobatchCalculator& microbatches) {
  StepSpecs specs;
  absl::StatusOr<StepSpec> full = planner.MakeSpec(options);
  if (!full.ok()) return full.status();
  const int full_m = options.num_microbatches;
  specs.by_m_[full_m] = *full;
  // The ramp-up's steps, until the first with the full M (M never shrinks).
  for (int64_t step = 1;; ++step) {
    const int m = microbatches.MicrobatchesOfStep(step);
    if (m >= full_m) break;
    if (step > kMaxRampSteps) {
      return absl::InvalidArgumentError(absl::StrCat("--rampup_batch_size: still ", m, " of ",
                                                     full_m, " microbatches after ", kMaxRampSteps,
                                                     " steps"));
    }
    specs.m_of_step_.push_back(m);
    if (specs.by_m_.count(m)) continue;
    PlannerOptions o = options;
    o.num_microbatches = m;
    absl::StatusOr<StepSpec> spec = planner.MakeSpec(o);
    if (!spec.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--rampup_batch_size: the planner ", planner.name(), " refuses ", m,
                       " microbatches (step ", step, "): ", spec.status().message()));
    }
    if (spec->num_stages != full->num_stages || spec->chunk_to_stage != full->chunk_to_stage) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--rampup_batch_size: the planner ", planner.name(), " lays out ", m,
          " microbatches on other stages or chunks than ", full_m, "; a ramp-up needs one layout"));
    }
    specs.by_m_[m] = *std::move(spec);
  }
  return specs;
}

const StepSpec& StepSpecs::ForStep(int64_t step) const {
  if (step >= 1 && step <= static_cast<int64_t>(m_of_step_.size())) {
    return by_m_.at(m_of_step_[step - 1]);
  }
  return full();
}

std::vector<int> StepSpecs::DistinctMicrobatches() const {
  std::vector<int> out;
  for (const auto& [m, spec] : by_m_) out.push_back(m);
  return out;
}

std::string StepSpecs::RampLine(int64_t step, int64_t first_step, int micro_batch_size,
                                int data_parallel) const {
  if (!ramping()) return "";
  const int m = ForStep(step).num_microbatches;
  if (step != first_step && m == ForStep(step - 1).num_microbatches) return "";
  return absl::StrCat("batch ramp-up: step ", step, " global batch ",
                      int64_t{m} * micro_batch_size * data_parallel, " sequences (", m,
                      " microbatches", data_parallel > 1 ? " per replica" : "", ")");
}

}  // namespace stagehand::runtime
