// StepDriver behaviour.
#include "actors/step_driver.h"

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
  return runtime::StageProgress{status.stage, status.blocked, status.done, status.sent,
                                status.received, status.waiting};
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
  if (done.stage == runtime::LossStage(st.spec)) st.losses = done.losses;
  if (static_cast<int>(st.done.size()) == static_cast<int>(st.stages.size())) {
    for (const stage_control& stage : st.stages) self->send(stage, tied_atom::value);
  }
}

void OnTied(Self* self, TiedGradients& grads) {
  auto& st = self->state;
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

void OnNorms(Self* self, SquaredNorms& norms) {
  auto& st = self->state;
  for (auto& [chunk, values] : norms.norms) st.norms[chunk] = std::move(values);
  if (++st.optimizer_done < static_cast<int>(st.stages.size())) return;
  st.optimizer_done = 0;
  double scale = runtime::ClipScaleFromSquaredNorms(st.norms, st.grad_clip, &st.grad_norm);
  for (const stage_control& stage : st.stages) {
    self->send(stage, optim_atom::value, scale, static_cast<int>(st.step));
  }
}

void OnOptimizerDone(Self* self) {
  auto& st = self->state;
  if (++st.optimizer_done < static_cast<int>(st.stages.size())) return;
  double loss = 0.0;
  for (double l : st.losses) loss += l;
  StepOutcome outcome;
  outcome.loss = loss / st.losses.size();
  outcome.losses = st.losses;
  outcome.grad_norm = st.grad_norm;
  outcome.busy_seconds = st.busy_seconds;
  Finish(self, std::move(outcome));
}

}  // namespace

step_driver_actor::behavior_type StepDriver(Self* self, runtime::StepSpec spec, double grad_clip) {
  self->state.stall = runtime::StallDetector(spec.num_stages);
  self->state.spec = std::move(spec);
  self->state.grad_clip = grad_clip;
  return {
      [=](const std::vector<stage_control>& stages) { self->state.stages = stages; },
      [=](step_atom, int64_t step) -> caf::typed_response_promise<StepOutcome> {
        auto& st = self->state;
        st.promise = self->make_response_promise<StepOutcome>();
        st.step = step;
        st.active = true;
        st.stall.Reset(step);
        st.done.clear();
        st.losses.clear();
        st.busy_seconds.assign(st.stages.size(), 0.0);
        st.tied.clear();
        st.norms.clear();
        st.optimizer_done = 0;
        for (const stage_control& stage : st.stages) self->send(stage, start_atom::value, step);
        return st.promise;
      },
      [=](const StageStatus& status) { OnStatus(self, status); },
      [=](const StageDone& done) { OnStageDone(self, done); },
      [=](TiedGradients& grads) { OnTied(self, grads); },
      [=](SquaredNorms& norms) { OnNorms(self, norms); },
      [=](const OptimizerDone&) { OnOptimizerDone(self); },
  };
}

}  // namespace stagehand::actors
