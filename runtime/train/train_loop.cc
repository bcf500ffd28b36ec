// The training loop's policy: phases, cadences, stops, history and end-of-run lines.
#include "runtime/train/train_loop.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_format.h"

namespace stagehand::runtime {

nlohmann::json LossHistoryToJson(const LossHistory& history) {
  nlohmann::json validation = nlohmann::json::array();
  for (const auto& [step, loss] : history.validation) validation.push_back({step, loss});
  return {{"train_loss", history.train}, {"validation_loss", validation}};
}

LossHistory LossHistoryFromRunJson(const nlohmann::json& run, int64_t step) {
  LossHistory history;
  if (!run.is_object() || !run.contains("history") || !run["history"].is_object()) return history;
  const nlohmann::json& h = run["history"];
  if (h.contains("train_loss") && h["train_loss"].is_array()) {
    for (const nlohmann::json& loss : h["train_loss"]) {
      if (loss.is_number()) history.train.push_back(loss.get<double>());
      // A skipped step's NaN loss is written as null: kept, so later steps stay in place.
      if (loss.is_null()) history.train.push_back(std::numeric_limits<double>::quiet_NaN());
    }
  }
  if (h.contains("validation_loss") && h["validation_loss"].is_array()) {
    for (const nlohmann::json& point : h["validation_loss"]) {
      if (point.is_array() && point.size() == 2 && point[0].is_number_integer() &&
          point[1].is_number() && point[0].get<int64_t>() <= step) {
        history.validation.emplace_back(point[0].get<int64_t>(), point[1].get<double>());
      }
    }
  }
  history.train.resize(std::min<size_t>(history.train.size(), std::max<int64_t>(step, 0)));
  return history;
}

TrainLoop::TrainLoop(TrainLoopOptions options, int64_t resumed_step, LossHistory history)
    : options_(options), resumed_step_(resumed_step), history_(std::move(history)) {
  // --exit_after counts only ahead of the checkpoint: a resumed run continues to --steps.
  last_step_ = options_.exit_after > resumed_step_ && options_.exit_after < options_.steps
                   ? options_.exit_after
                   : options_.steps;
}

TrainAction TrainLoop::Start() const {
  if (resumed_step_ == 0 && options_.evaluate) return {TrainPhase::kEvaluate, 0};
  if (first_step() <= last_step_) return {TrainPhase::kStep, first_step()};
  return {TrainPhase::kFinish, resumed_step_};
}

TrainAction TrainLoop::StepFinished(int64_t step, double loss, bool stop_requested) {
  history_.train.resize(std::max<int64_t>(step - 1, 0));
  history_.train.push_back(loss);
  if (step < options_.steps && step == last_step_) {
    stop_ = StopReason::kExitAfter;
    stopped_at_ = step;
  } else if (step < options_.steps && stop_requested) {
    stop_ = StopReason::kSignal;
    stopped_at_ = step;
  }
  if (EvalDue(step)) return {TrainPhase::kEvaluate, step};
  return AfterEvaluation(step);
}

TrainAction TrainLoop::Evaluated(int64_t step, double loss) {
  history_.validation.emplace_back(step, loss);
  if (step == 0) {
    if (first_step() <= last_step_) return {TrainPhase::kStep, first_step()};
    return {TrainPhase::kFinish, 0};
  }
  return AfterEvaluation(step);
}

TrainAction TrainLoop::Checkpointed(int64_t step) { return AfterCheckpoint(step); }

bool TrainLoop::LogDue(int64_t step) const {
  return step % options_.log_every == 0 || step == options_.steps || step == last_step_ ||
         step == stopped_at_;
}

bool TrainLoop::EvalDue(int64_t step) const {
  if (!options_.evaluate) return false;
  return step == options_.steps || (options_.eval_every > 0 && step % options_.eval_every == 0);
}

bool TrainLoop::CheckpointDue(int64_t step) const {
  if (!options_.checkpoints) return false;
  return step == options_.steps || step == stopped_at_ ||
         (options_.checkpoint_every > 0 && step % options_.checkpoint_every == 0);
}

TrainAction TrainLoop::AfterEvaluation(int64_t step) const {
  if (CheckpointDue(step)) return {TrainPhase::kCheckpoint, step};
  return AfterCheckpoint(step);
}

TrainAction TrainLoop::AfterCheckpoint(int64_t step) const {
  if (step == stopped_at_ || step >= last_step_) return {TrainPhase::kFinish, step};
  return {TrainPhase::kStep, step + 1};
}

std::string TrainLoop::EndLine() const {
  if (stop_ != StopReason::kNone) {
    return absl::StrFormat("stopped after step %d of %d (%s); continue with --resume", stopped_at_,
                           options_.steps,
                           stop_ == StopReason::kSignal ? "signal" : "--exit_after");
  }
  if (history_.validation.empty()) return "";
  return absl::StrFormat("held-out loss after %d steps %.4f (from %.4f)", options_.steps,
                         history_.validation.back().second, history_.validation.front().second);
}

LossCurve TrainLoop::Curve(const std::string& title) const {
  LossCurve curve;
  curve.title = title;
  for (size_t i = 0; i < history_.train.size(); ++i)
    curve.train.emplace_back(i + 1, history_.train[i]);
  curve.validation = history_.validation;
  return curve;
}

std::string HeldOutLine(int64_t step, double loss) {
  if (step == 0) return absl::StrFormat("held-out loss before training %.4f", loss);
  return absl::StrFormat("step %d held-out loss %.4f", step, loss);
}

std::string LossCurveTitle(const std::string& data, size_t layers, int d_model,
                           const std::string& tokenizer) {
  return absl::StrFormat("%s: %zu layers, d_model %d, %s tokens", data, layers, d_model, tokenizer);
}

absl::StatusOr<std::string> WriteLossCurve(const TrainLoop& loop, const std::string& checkpoint_dir,
                                           const std::string& title) {
  const std::string svg = checkpoint_dir + "/loss_curve.svg";
  if (absl::Status s = WriteLossCurveSvg(svg, loop.Curve(title)); !s.ok()) return s;
  return svg;
}

}  // namespace stagehand::runtime
