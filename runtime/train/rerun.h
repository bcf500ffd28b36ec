// The rerun state machine: after a step's forward and backward, before the optimizer, it
// checks the loss and gradients (NaN/Inf, a loss spike); on a hit it asks for the same step
// to be re-run with the same data, and tells a transient fault (the rerun differs) from a
// persistent one (the rerun reproduces the result bitwise). Thread-free policy, as Megatron
// Core's rerun_state_machine; not an executor: the step driver runs, re-runs and discards.
#ifndef STAGEHAND_RUNTIME_TRAIN_RERUN_H_
#define STAGEHAND_RUNTIME_TRAIN_RERUN_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace stagehand::runtime {

// What a persistent bad step does: stop the run with a report, or skip the batch.
enum class OnBadStep { kStop, kSkip };

// "stop" or "skip"; InvalidArgument naming --on_bad_step otherwise.
absl::StatusOr<OnBadStep> OnBadStepFromName(const std::string& name);

struct RerunOptions {
  bool enabled = true;        // check every step at all
  double spike_factor = 0;    // a loss above this x the running median is a spike (0: off)
  int spike_window = 100;     // the running median is over the last this many applied steps
  int spike_min_history = 5;  // no spike check before this many applied steps
  OnBadStep on_bad_step = OnBadStep::kStop;
  int max_transient = 3;  // a rank with more transient faults than this is reported
  int max_attempts = 3;   // runs of one step (first + reruns) before a differing bad
                          // result counts as persistent
};

// One tensor's squared gradient norm, as a stage reported it.
struct TensorNorm {
  int stage = 0;
  int chunk = 0;
  std::string name;
  double squared = 0.0;
};

// One run of a step: what the check looks at.
struct StepAttempt {
  std::vector<double> losses;     // per microbatch
  int loss_stage = 0;             // the stage that computes the loss
  std::vector<TensorNorm> norms;  // every gradient tensor, chunk order then declaration order
};

enum class StepVerdict {
  kApply,  // the step is healthy (or a rerun's healthy result is kept): run the optimizer
  kRerun,  // discard the gradients, run the same step again
  kSkip,   // discard the gradients, no update, the batch is skipped
  kStop,   // stop the run; `message` is the report
};

struct RerunDecision {
  StepVerdict verdict = StepVerdict::kApply;
  std::string message;  // a line to log (empty: nothing to say); the report for kStop
};

class RerunStateMachine {
 public:
  // `stage_rank`: the rank of each stage (empty: one process, rank 0).
  RerunStateMachine(RerunOptions options, std::vector<int> stage_rank);

  // The applied steps' losses so far (a resumed run's history), for the running median.
  void SeedHistory(const std::vector<double>& losses);
  // The verdict on run `attempt` of step `step`. The first call for a step is its first run;
  // each following call for the same step is a rerun the previous verdict asked for.
  RerunDecision Check(int64_t step, const StepAttempt& attempt);

  // Transient faults counted so far: rank -> count.
  const std::map<int, int>& transient_faults() const { return transient_; }
  const RerunOptions& options() const { return options_; }

 private:
  // What is wrong with `attempt` (empty: nothing); `*stage`: the stage to blame.
  std::string Diagnose(int64_t step, const StepAttempt& attempt, int* stage) const;
  RerunDecision Persistent(int64_t step, const std::string& problem);
  RerunDecision Transient(int64_t step, const StepAttempt& attempt, const std::string& problem);
  void Applied(const StepAttempt& attempt);
  double Median() const;
  int RankOf(int stage) const;

  RerunOptions options_;
  std::vector<int> stage_rank_;
  std::vector<double> history_;  // applied steps' mean losses, the last spike_window
  std::map<int, int> transient_;
  int64_t step_ = -1;                 // the step being checked
  int attempts_ = 0;                  // runs of it checked so far
  std::vector<uint64_t> first_bits_;  // the first run's losses and norms, bit for bit
  std::string first_problem_;
  int first_stage_ = 0;
};

// The losses and squared norms of `attempt` as bit patterns: two runs are "the same result"
// when these are equal.
std::vector<uint64_t> AttemptBits(const StepAttempt& attempt);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_TRAIN_RERUN_H_
