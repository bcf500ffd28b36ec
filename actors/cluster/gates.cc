// StageGate and DriverGate behaviours.
#include "actors/cluster/gates.h"

#include "absl/strings/str_cat.h"
#include "actors/cluster/checks.h"
#include "actors/cluster/cluster_messages.h"
#include "actors/messages.h"
#include "runtime/cluster/tied_shapes.h"

namespace stagehand::actors::cluster {
namespace {

// A StageDone's loss count: the M of some step of the run, times the replicas (the loss
// stage gathers every replica's losses).
bool OneOfTheMicrobatchCounts(int n, const runtime::StepSpec& spec, const runtime::StepSpecs* specs,
                              int dp) {
  if (specs == nullptr) return int64_t{n} == int64_t{spec.num_microbatches} * dp;
  for (int m : specs->DistinctMicrobatches()) {
    if (int64_t{n} == int64_t{m} * dp) return true;
  }
  return false;
}

std::string SenderName(caf::local_actor* self) {
  caf::strong_actor_ptr sender = self->current_sender();
  if (sender == nullptr) return "an anonymous sender";
  return absl::StrCat("actor ", sender->id(), " on node ", caf::to_string(sender->node()));
}

}  // namespace

stage_gate_actor::behavior_type StageGate(stage_gate_actor::stateful_pointer<StageGateState> self,
                                          StageGateInit init) {
  self->state.init = std::move(init);
  auto refuse = [self](const std::string& what) {
    const auto& in = self->state.init;
    caf::anon_send(in.supervisor, ClusterAbort{absl::StrCat("rank ", in.rank, " stage ", in.stage,
                                                            ": refused a driver message from ",
                                                            SenderName(self), ": ", what)});
  };
  return {
      [=](start_atom, int64_t step) {
        auto& st = self->state;
        if (step <= st.step) {
          refuse(absl::StrCat("start of step ", step, " after step ", st.step));
          return;
        }
        st.step = step;
        auto pass_on = [=] {
          const auto& in = self->state.init;
          self->send(in.comm, start_atom::value, step);
          self->send(in.fronted, start_atom::value, step);
        };
        if (!st.init.trace_steps) {
          pass_on();
          return;
        }
        // Traced: the rank's step begins (trace_steps.h) before any of its events; the gate
        // takes no other message until then, so nothing overtakes the start.
        self->request(st.init.trace_steps, caf::infinite, start_atom::value, step)
            .await([=](caf::ok_atom) { pass_on(); },
                   [=](caf::error& e) {
                     refuse(absl::StrCat("trace steps: ", self->system().render(e)));
                   });
      },
      [=](probe_atom, int wave) {
        auto& st = self->state;
        self->send(st.init.fronted, probe_atom::value, wave);
        if (wave != kHangProbeWave) return;
        self->request(st.init.comm, std::chrono::seconds(2), pending_atom::value)
            .then([=](const std::string& transfers) {
              auto& in = self->state.init;
              self->send(in.driver_gate, StageReport{in.rank, in.stage, transfers, in.replica});
            });
      },
      [=](tied_atom) { self->send(self->state.init.fronted, tied_atom::value); },
      [=](tied_atom, TiedGradients& sums) {
        auto& st = self->state;
        if (sums.stage != st.init.stage) {
          refuse(absl::StrCat("tied gradients addressed to stage ", sums.stage));
          return;
        }
        if (std::string bad = runtime::CheckTiedGradients(
                sums.grads,
                runtime::StageTiedShapes(st.init.spec, st.init.stage, st.init.wte_floats));
            !bad.empty()) {
          refuse(absl::StrCat("tied gradients: ", bad));
          return;
        }
        self->send(st.init.fronted, tied_atom::value, std::move(sums));
      },
      [=](discard_atom) { self->send(self->state.init.fronted, discard_atom::value); },
      // A rerun (runtime/train/rerun.h) runs the current step again: no trace step begins.
      [=](rerun_atom, int64_t step) {
        auto& st = self->state;
        if (step != st.step) {
          refuse(absl::StrCat("rerun of step ", step, " during step ", st.step));
          return;
        }
        self->send(st.init.comm, start_atom::value, step);
        self->send(st.init.fronted, rerun_atom::value, step);
      },
      [=](optim_atom, double scale, int step) {
        auto& st = self->state;
        if (step != st.step || !(scale >= 0.0)) {
          refuse(absl::StrCat("optimizer order for step ", step, " scale ", scale, " during step ",
                              st.step));
          return;
        }
        self->send(st.init.fronted, optim_atom::value, scale, step);
      },
  };
}

driver_gate_actor::behavior_type DriverGate(
    driver_gate_actor::stateful_pointer<DriverGateState> self, DriverGateInit init) {
  self->state.init = std::move(init);
  auto stage_ok = [self](int stage, const char* what) {
    const auto& in = self->state.init;
    if (stage >= 0 && stage < in.spec.num_stages) return true;
    self->send(in.coordinator, ClusterAbort{absl::StrCat(
                                   "driver refused ", what, " from ", SenderName(self), ": stage ",
                                   stage, " out of range [0, ", in.spec.num_stages, ")")});
    return false;
  };
  auto chunks_ok = [self](int stage, const std::string& bad, const char* what) {
    if (bad.empty()) return true;
    self->send(self->state.init.coordinator,
               ClusterAbort{absl::StrCat("driver refused ", what, " of stage ", stage, " from ",
                                         SenderName(self), ": ", bad)});
    return false;
  };
  return {
      [=](StageStatus& s) {
        if (!stage_ok(s.stage, "a StageStatus")) return;
        const auto& in = self->state.init;
        if (s.wave == kHangProbeWave) {
          self->send(in.coordinator, StageReport{-1, s.stage, s.waiting, in.replica});
          return;
        }
        self->send(in.driver, std::move(s));
      },
      [=](StageDone& d) {
        if (!stage_ok(d.stage, "a StageDone")) return;
        const auto& in = self->state.init;
        if (d.error.empty() && d.stage == in.spec.chunk_to_stage.back() &&
            !OneOfTheMicrobatchCounts(static_cast<int>(d.losses.size()), in.spec, in.specs.get(),
                                      in.dp)) {
          chunks_ok(d.stage,
                    absl::StrCat(d.losses.size(), " losses for ", in.spec.num_microbatches,
                                 " microbatches",
                                 in.dp > 1 ? absl::StrCat(" x ", in.dp, " replicas") : ""),
                    "a StageDone");
          return;
        }
        self->send(self->state.init.driver, std::move(d));
      },
      [=](TiedGradients& g) {
        if (!stage_ok(g.stage, "TiedGradients")) return;
        const auto& in = self->state.init;
        if (!chunks_ok(g.stage,
                       runtime::CheckTiedGradients(
                           g.grads, runtime::StageTiedShapes(in.spec, g.stage, in.wte_floats)),
                       "TiedGradients")) {
          return;
        }
        self->send(self->state.init.driver, std::move(g));
      },
      [=](SquaredNorms& n) {
        if (!stage_ok(n.stage, "SquaredNorms")) return;
        if (!chunks_ok(n.stage, CheckSquaredNorms(n, self->state.init.spec), "SquaredNorms")) {
          return;
        }
        self->send(self->state.init.driver, std::move(n));
      },
      [=](OptimizerDone& d) {
        if (!stage_ok(d.stage, "OptimizerDone")) return;
        self->send(self->state.init.driver, d);
      },
      [=](GradientsDiscarded& d) {
        if (!stage_ok(d.stage, "GradientsDiscarded")) return;
        self->send(self->state.init.driver, d);
      },
      [=](StageReport& r) { self->send(self->state.init.coordinator, std::move(r)); },
  };
}

}  // namespace stagehand::actors::cluster
