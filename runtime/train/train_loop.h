// The training loop's policy, written once for the one-process launcher (tools/launch) and
// the cluster coordinator (actors/cluster): which phase comes next (held-out evaluation,
// step, checkpoint, finish), logging cadence, --exit_after and signal stops, the loss
// history a checkpoint records, the loss curve and the end-of-run lines. A state machine
// driven by "this phase finished": a synchronous loop and an actor run it alike, and it is
// tested without threads. Not an executor: it runs no step, evaluation or checkpoint itself.
#ifndef STAGEHAND_RUNTIME_TRAIN_TRAIN_LOOP_H_
#define STAGEHAND_RUNTIME_TRAIN_TRAIN_LOOP_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "runtime/io/loss_curve.h"

namespace stagehand::runtime {

// Losses so far: every step's training loss (step i + 1 at index i) and held-out losses
// as (step, loss), step 0 for the one before training.
struct LossHistory {
  std::vector<double> train;
  std::vector<std::pair<int64_t, double>> validation;
};

// {"train_loss": [...], "validation_loss": [[step, loss], ...]}: a manifest's run["history"].
nlohmann::json LossHistoryToJson(const LossHistory& history);
// The history stored in a manifest's run JSON (run["history"]), cut to the checkpoint's
// `step`; malformed entries are skipped.
LossHistory LossHistoryFromRunJson(const nlohmann::json& run, int64_t step);

struct TrainLoopOptions {
  int64_t steps = 1;         // the whole run's length (--steps)
  int64_t exit_after = 0;    // stop cleanly after this step when 0 < exit_after < steps
  int log_every = 1;         // a step line every this many steps, and for the last step run
  bool evaluate = true;      // held-out evaluation at all (false: no held-out batches)
  int eval_every = 0;        // after every this many steps (0: before training and at the end)
  bool checkpoints = false;  // a checkpoint folder was given
  int checkpoint_every = 0;  // after every this many steps (0: after the last step run only)
};

enum class TrainPhase {
  kEvaluate,    // held-out evaluation after `step` (0: before training)
  kStep,        // run training step `step`
  kCheckpoint,  // write the checkpoint of `step`
  kFinish,      // nothing left: save outputs, print the end-of-run lines
};

struct TrainAction {
  TrainPhase phase = TrainPhase::kFinish;
  int64_t step = 0;
};

// Why a run ended before --steps.
enum class StopReason { kNone, kExitAfter, kSignal };

class TrainLoop {
 public:
  // `resumed_step`: the restored checkpoint's step (0 for a fresh run); `history`: its losses.
  TrainLoop(TrainLoopOptions options, int64_t resumed_step, LossHistory history);

  // The first action: held-out evaluation before training for a fresh run, else the step
  // after the checkpoint, or kFinish when none is left.
  TrainAction Start() const;
  // Each returns the next action once the current one finished. `stop_requested`: a signal
  // asked the run to stop after this step.
  TrainAction StepFinished(int64_t step, double loss, bool stop_requested);
  TrainAction Evaluated(int64_t step, double loss);
  TrainAction Checkpointed(int64_t step);

  int64_t first_step() const { return resumed_step_ + 1; }
  // The last step this run intends to run (--exit_after, else --steps).
  int64_t last_step() const { return last_step_; }
  // Whether step `step`'s line is printed.
  bool LogDue(int64_t step) const;
  StopReason stop_reason() const { return stop_; }
  const LossHistory& history() const { return history_; }

  // The lines that close a run: "stopped after step ..." (stopped early) or "held-out loss
  // after N steps X (from Y)" (finished with held-out losses); empty when neither applies.
  std::string EndLine() const;
  // The loss curve of every train and held-out loss so far, with `title`.
  LossCurve Curve(const std::string& title) const;

 private:
  // What follows the step `step`, evaluation (if due) already done.
  TrainAction AfterEvaluation(int64_t step) const;
  TrainAction AfterCheckpoint(int64_t step) const;
  bool EvalDue(int64_t step) const;
  bool CheckpointDue(int64_t step) const;

  TrainLoopOptions options_;
  int64_t resumed_step_;
  int64_t last_step_;
  LossHistory history_;
  StopReason stop_ = StopReason::kNone;
  int64_t stopped_at_ = -1;  // the step after which the run stops early, -1: none
};

// "held-out loss before training X" (step 0) or "step N held-out loss X", X with 4 decimals.
std::string HeldOutLine(int64_t step, double loss);

// The loss curve's title: "<data>: <layers> layers, d_model <d>, <tokenizer> tokens".
std::string LossCurveTitle(const std::string& data, size_t layers, int d_model,
                           const std::string& tokenizer);
// Writes `loop`'s curve to <checkpoint_dir>/loss_curve.svg; returns that path.
absl::StatusOr<std::string> WriteLossCurve(const TrainLoop& loop, const std::string& checkpoint_dir,
                                           const std::string& title);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_TRAIN_TRAIN_LOOP_H_
