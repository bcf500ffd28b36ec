// StepDriver behaviour.
#include "actors/step_driver.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "runtime/step_spec.h"
#include "runtime/train/optimizer.h"

namespace stagehand::actors {
namespace {

using Self = step_driver_actor::stateful_base<StepDriverState>;

void Finish(Self* self, StepOutcome outcome) {
  auto& st = self->state;
  if (!st.active) return;
  st.active = false;
  st.promise.deliver(std::move(outcome));
}

runtime::StageProgress Progress(const StageStatus& status) {
  return runtime::StageProgress{status.stage, status.blocked,  status.done,
                                status.sent,  status.received, status.waiting};
}

// Stall decisions are the StallDetector's; the driver only sends its probe waves.
void OnStatus(Self* self, const StageStatus& status) {
  auto& st = self->state;
  if (!st.active) return;
  if (status.wave == 0) {
    if (std::optional<int> wave = st.stall.OnReport(Progress(status))) {
      for (const stage_control& stage : st.stages) self->send(stage, probe_atom::value, *wave);
    }
    return;
  }
  if (std::optional<std::string> report = st.stall.OnProbeReply(status.wave, Progress(status))) {
    StepOutcome stalled;
    stalled.error = *std::move(report);
    Finish(self, std::move(stalled));
  }
}

using runtime::TimerPhase;

void AddPhase(StepDriverState& st, int stage, TimerPhase phase, double seconds) {
  if (stage >= 0 && stage < static_cast<int>(st.phases.size())) {
    st.phases[stage][static_cast<int>(phase)] += seconds;
  }
}

// A stage's seconds of a run (StageDone::phase_seconds): forward, backward-input,
// backward-weight, data loading, transfers exposed.
void AddPhases(StepDriverState& st, int stage, const std::vector<double>& seconds) {
  const TimerPhase order[] = {TimerPhase::kForward, TimerPhase::kBackwardInput,
                              TimerPhase::kBackwardWeight, TimerPhase::kDataLoading,
                              TimerPhase::kTransfersExposed};
  for (size_t i = 0; i < seconds.size() && i < 5; ++i) AddPhase(st, stage, order[i], seconds[i]);
}

// Per stage, the timers' phases; idle (bubble) is the step's wall time less the stage's lane
// time and its transfers exposed.
std::vector<std::vector<double>> PhaseReport(const StepDriverState& st) {
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - st.began).count();
  std::vector<std::vector<double>> out;
  for (const runtime::PhaseSeconds& p : st.phases) {
    std::vector<double> v(p.begin(), p.end());
    const double lane = p[static_cast<int>(TimerPhase::kForward)] +
                        p[static_cast<int>(TimerPhase::kBackwardInput)] +
                        p[static_cast<int>(TimerPhase::kBackwardWeight)] +
                        p[static_cast<int>(TimerPhase::kOptimizer)];
    v[static_cast<int>(TimerPhase::kIdle)] =
        std::max(wall - lane - p[static_cast<int>(TimerPhase::kTransfersExposed)], 0.0);
    out.push_back(std::move(v));
  }
  return out;
}

void OnStageDone(Self* self, const StageDone& done) {
  auto& st = self->state;
  if (!st.active) return;
  if (!done.error.empty()) {
    StepOutcome failed;
    failed.error = done.error;
    Finish(self, std::move(failed));
    return;
  }
  st.done.insert(done.stage);
  st.busy_seconds[done.stage] = done.busy_seconds;
  AddPhases(st, done.stage, done.phase_seconds);
  if (done.stage == runtime::LossStage(st.spec)) {
    st.losses = done.losses;
    RestoreNonFinite(st.losses, done.non_finite_losses);
  }
  if (static_cast<int>(st.done.size()) == static_cast<int>(st.stages.size())) {
    for (const stage_control& stage : st.stages) self->send(stage, tied_atom::value);
  }
}

void OnTied(Self* self, TiedGradients& grads) {
  auto& st = self->state;
  AddPhase(st, grads.stage, TimerPhase::kOptimizer, grads.seconds);
  st.tied[grads.stage] = std::move(grads.grads);
  if (st.tied.size() < st.stages.size()) return;
  // The one tied-gradient sum (runtime/train/optimizer.h): every holder gets the sum.
  std::vector<const runtime::TiedGradientMap*> parts;
  for (const auto& [stage, chunks] : st.tied) parts.push_back(&chunks);
  const std::map<std::string, std::vector<float>> sums = runtime::SumTiedGradients(parts);
  for (int s = 0; s < static_cast<int>(st.stages.size()); ++s) {
    self->send(st.stages[s], tied_atom::value,
               TiedGradients{s, runtime::SumsForHolders(st.tied[s], sums)});
  }
}

// The step's losses and gradient norms, in chunk order, for the rerun state machine.
runtime::StepAttempt Attempt(const StepDriverState& st) {
  runtime::StepAttempt attempt;
  attempt.losses = st.losses;
  attempt.loss_stage = runtime::LossStage(st.spec);
  for (const auto& [chunk, values] : st.norms) {
    auto names = st.names.find(chunk);
    for (size_t i = 0; i < values.size(); ++i) {
      const bool named = names != st.names.end() && i < names->second.size();
      attempt.norms.push_back({st.spec.chunk_to_stage[chunk], chunk,
                               named ? names->second[i] : absl::StrCat("tensor ", i), values[i]});
    }
  }
  return attempt;
}

// Clears the per-run state and starts every stage on the step (again, for a rerun).
void StartRun(Self* self, bool rerun) {
  auto& st = self->state;
  st.stall.Reset(st.step);
  st.done.clear();
  st.losses.clear();
  st.busy_seconds.assign(st.stages.size(), 0.0);
  st.tied.clear();
  st.norms.clear();
  st.names.clear();
  st.optimizer_done = 0;
  for (const stage_control& stage : st.stages) {
    if (rerun) {
      self->send(stage, rerun_atom::value, st.step);
    } else {
      self->send(stage, start_atom::value, st.step);
    }
  }
}

StepOutcome Outcome(StepDriverState& st) {
  double loss = 0.0;
  for (double l : st.losses) loss += l;
  StepOutcome outcome;
  outcome.loss = loss / st.losses.size();
  outcome.grad_norm = st.grad_norm;
  outcome.busy_seconds = st.busy_seconds;
  outcome.runs = st.runs;
  outcome.notes = st.notes;
  outcome.phase_seconds = PhaseReport(st);
  return outcome;
}

void OnNorms(Self* self, SquaredNorms& norms) {
  auto& st = self->state;
  AddPhase(st, norms.stage, TimerPhase::kOptimizer, norms.seconds);
  for (auto& [chunk, values] : norms.norms) {
    auto non_finite = norms.non_finite.find(chunk);
    if (non_finite != norms.non_finite.end()) RestoreNonFinite(values, non_finite->second);
    st.norms[chunk] = std::move(values);
  }
  for (auto& [chunk, names] : norms.names) st.names[chunk] = std::move(names);
  if (++st.optimizer_done < static_cast<int>(st.stages.size())) return;
  st.optimizer_done = 0;
  double scale = runtime::ClipScaleFromSquaredNorms(st.norms, st.grad_clip, &st.grad_norm);
  // The rerun state machine's verdict, before any update.
  const runtime::RerunDecision decision = st.rerun.Check(st.step, Attempt(st));
  if (!decision.message.empty() && decision.verdict != runtime::StepVerdict::kStop) {
    st.notes.push_back(decision.message);
  }
  switch (decision.verdict) {
    case runtime::StepVerdict::kApply:
      for (const stage_control& stage : st.stages) {
        self->send(stage, optim_atom::value, scale, static_cast<int>(st.step));
      }
      return;
    case runtime::StepVerdict::kStop: {
      StepOutcome stopped;
      stopped.error = decision.message;
      Finish(self, std::move(stopped));
      return;
    }
    case runtime::StepVerdict::kRerun:
    case runtime::StepVerdict::kSkip:
      // The gradients go first; OnDiscarded re-runs or skips.
      st.pending = decision.verdict;
      for (const stage_control& stage : st.stages) self->send(stage, discard_atom::value);
      return;
  }
}

void OnDiscarded(Self* self, const GradientsDiscarded& discarded) {
  auto& st = self->state;
  AddPhase(st, discarded.stage, TimerPhase::kOptimizer, discarded.seconds);
  if (!st.active || ++st.optimizer_done < static_cast<int>(st.stages.size())) return;
  st.optimizer_done = 0;
  if (st.pending == runtime::StepVerdict::kRerun) {
    ++st.runs;
    StartRun(self, /*rerun=*/true);
    return;
  }
  StepOutcome skipped = Outcome(st);
  skipped.skipped = true;
  Finish(self, std::move(skipped));
}

void OnOptimizerDone(Self* self, const OptimizerDone& done) {
  auto& st = self->state;
  AddPhase(st, done.stage, TimerPhase::kOptimizer, done.seconds);
  if (++st.optimizer_done < static_cast<int>(st.stages.size())) return;
  Finish(self, Outcome(st));
}

}  // namespace

step_driver_actor::behavior_type StepDriver(Self* self, runtime::StepSpec spec, double grad_clip,
                                            runtime::RerunOptions rerun,
                                            std::vector<int> stage_rank) {
  self->state.stall = runtime::StallDetector(spec.num_stages);
  self->state.spec = std::move(spec);
  self->state.grad_clip = grad_clip;
  self->state.rerun = runtime::RerunStateMachine(rerun, std::move(stage_rank));
  return {
      [=](const std::vector<stage_control>& stages) { self->state.stages = stages; },
      [=](history_atom, const std::vector<double>& losses) {
        self->state.rerun.SeedHistory(losses);
      },
      [=](step_atom, int64_t step) -> caf::typed_response_promise<StepOutcome> {
        auto& st = self->state;
        st.promise = self->make_response_promise<StepOutcome>();
        st.step = step;
        st.active = true;
        st.runs = 1;
        st.notes.clear();
        st.phases.assign(st.stages.size(), runtime::PhaseSeconds{});
        st.began = std::chrono::steady_clock::now();
        StartRun(self, /*rerun=*/false);
        return st.promise;
      },
      [=](const StageStatus& status) { OnStatus(self, status); },
      [=](const StageDone& done) { OnStageDone(self, done); },
      [=](TiedGradients& grads) { OnTied(self, grads); },
      [=](SquaredNorms& norms) { OnNorms(self, norms); },
      [=](const OptimizerDone& done) { OnOptimizerDone(self, done); },
      [=](const GradientsDiscarded& discarded) { OnDiscarded(self, discarded); },
  };
}

}  // namespace stagehand::actors
