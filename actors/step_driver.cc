// StepDriver behaviour.
#include "actors/step_driver.h"

#include "absl/strings/str_cat.h"
#include "runtime/train/stage_work.h"

namespace stagehand::actors {
namespace {

using Self = caf::stateful_actor<StepDriverState>;

void Finish(Self* self, StepOutcome outcome) {
  auto& st = self->state;
  if (!st.active) return;
  st.active = false;
  st.promise.deliver(std::move(outcome));
}

// A stall: every unfinished stage idle with nothing it may run, no tensor in flight.
bool LooksStalled(const std::map<int, StageStatus>& statuses, int num_stages) {
  if (static_cast<int>(statuses.size()) < num_stages) return false;
  int64_t sent = 0, received = 0;
  bool any_blocked = false;
  for (const auto& [stage, s] : statuses) {
    if (!s.done && !s.blocked) return false;
    any_blocked |= s.blocked;
    sent += s.sent;
    received += s.received;
  }
  return any_blocked && sent == received;
}

void OnStatus(Self* self, const StageStatus& status) {
  auto& st = self->state;
  if (!st.active) return;
  const int P = static_cast<int>(st.stages.size());
  if (status.wave == 0) {
    st.latest[status.stage] = status;
    if (!LooksStalled(st.latest, P)) return;
    // Confirm with a second wave: the same counters, still blocked, means no progress.
    st.snapshot = st.latest;
    st.replies.clear();
    ++st.wave;
    for (const caf::actor& stage : st.stages) self->send(stage, probe_atom::value, st.wave);
    return;
  }
  if (status.wave != st.wave) return;
  st.replies[status.stage] = status;
  if (static_cast<int>(st.replies.size()) < P) return;
  if (!LooksStalled(st.replies, P)) return;
  for (const auto& [stage, s] : st.replies) {
    const StageStatus& before = st.snapshot[stage];
    if (before.sent != s.sent || before.received != s.received) return;
  }
  std::string report = absl::StrCat("step ", st.step, " stalled: no stage can run anything and no tensor is in flight");
  for (const auto& [stage, s] : st.replies) {
    if (!s.done) absl::StrAppend(&report, "\n  ", s.waiting);
  }
  StepOutcome stalled;
  stalled.error = report;
  Finish(self, std::move(stalled));
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
  if (done.stage == st.spec.chunk_to_stage.back()) st.losses = done.losses;
  if (static_cast<int>(st.done.size()) == static_cast<int>(st.stages.size())) {
    for (const caf::actor& stage : st.stages) self->send(stage, tied_atom::value);
  }
}

void OnTied(Self* self, TiedGradients& grads) {
  auto& st = self->state;
  st.tied[grads.stage] = std::move(grads.grads);
  if (st.tied.size() < st.stages.size()) return;
  // Sum each tied tensor over its holders in chunk order; every holder gets the sum.
  std::map<int, const std::map<std::string, std::vector<float>>*> by_chunk;
  for (const auto& [stage, chunks] : st.tied) {
    for (const auto& [chunk, tensors] : chunks) by_chunk[chunk] = &tensors;
  }
  std::map<std::string, std::vector<float>> sums;
  for (const auto& [chunk, tensors] : by_chunk) {
    for (const auto& [name, g] : *tensors) {
      std::vector<float>& sum = sums[name];
      if (sum.empty()) {
        sum = g;
      } else {
        for (size_t i = 0; i < g.size(); ++i) sum[i] += g[i];
      }
    }
  }
  for (int s = 0; s < static_cast<int>(st.stages.size()); ++s) {
    TiedGradients reply{s, {}};
    for (const auto& [chunk, tensors] : st.tied[s]) {
      for (const auto& entry : tensors) reply.grads[chunk][entry.first] = sums[entry.first];
    }
    self->send(st.stages[s], tied_atom::value, std::move(reply));
  }
}

void OnNorms(Self* self, SquaredNorms& norms) {
  auto& st = self->state;
  for (auto& [chunk, values] : norms.norms) st.norms[chunk] = std::move(values);
  if (++st.optimizer_done < static_cast<int>(st.stages.size())) return;
  st.optimizer_done = 0;
  double scale = runtime::ClipScaleFromSquaredNorms(st.norms, st.grad_clip, &st.grad_norm);
  for (const caf::actor& stage : st.stages) {
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
  outcome.grad_norm = st.grad_norm;
  outcome.busy_seconds = st.busy_seconds;
  Finish(self, std::move(outcome));
}

}  // namespace

caf::behavior StepDriver(Self* self, runtime::StepSpec spec, double grad_clip) {
  self->state.spec = std::move(spec);
  self->state.grad_clip = grad_clip;
  return {
      [=](const std::vector<caf::actor>& stages) { self->state.stages = stages; },
      [=](step_atom, int64_t step) -> caf::typed_response_promise<StepOutcome> {
        auto& st = self->state;
        st.promise = self->make_response_promise<StepOutcome>();
        st.step = step;
        st.active = true;
        st.latest.clear();
        st.snapshot.clear();
        st.replies.clear();
        st.done.clear();
        st.losses.clear();
        st.busy_seconds.assign(st.stages.size(), 0.0);
        st.tied.clear();
        st.norms.clear();
        st.optimizer_done = 0;
        for (const caf::actor& stage : st.stages) self->send(stage, start_atom::value, step);
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
