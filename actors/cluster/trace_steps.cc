// TraceSteps behaviour.
#include "actors/cluster/trace_steps.h"

#include "actors/messages.h"

namespace stagehand::actors::cluster {

trace_steps_actor::behavior_type TraceSteps(
    trace_steps_actor::stateful_pointer<TraceStepsState> self, TraceStepsInit init) {
  self->state.init = std::move(init);
  return {
      // Every gate of the rank asks; the first for a step begins it.
      [=](start_atom, int64_t step) -> caf::ok_atom {
        auto& st = self->state;
        if (step > st.step) {
          st.init.trace->StepBegan(step, runtime::trace::NowNanos());
          st.step = step;
          st.optimized = 0;
        }
        return caf::ok_atom::value;
      },
      [=](OptimizerDone& done) {
        auto& st = self->state;
        if (++st.optimized == st.init.local_stages) {
          st.init.trace->StepEnded(st.step, runtime::trace::NowNanos());
        }
        self->send(st.init.driver, std::move(done));
      },
      // Everything else a stage sends its driver, passed on unchanged.
      [=](StageStatus& m) { self->send(self->state.init.driver, std::move(m)); },
      [=](StageDone& m) { self->send(self->state.init.driver, std::move(m)); },
      [=](TiedGradients& m) { self->send(self->state.init.driver, std::move(m)); },
      [=](SquaredNorms& m) { self->send(self->state.init.driver, std::move(m)); },
      [=](GradientsDiscarded& m) { self->send(self->state.init.driver, std::move(m)); },
  };
}

}  // namespace stagehand::actors::cluster
