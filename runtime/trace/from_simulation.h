// The simulator's result as a Trace, in the same format as the actor runtime's, so that
// unit-cost plans can be summarised and drawn (launch --dry_run --trace).
// Not a simulator: it converts what Simulate returned.
#ifndef STAGEHAND_RUNTIME_TRACE_FROM_SIMULATION_H_
#define STAGEHAND_RUNTIME_TRACE_FROM_SIMULATION_H_

#include <cstdint>

#include "runtime/simulator.h"
#include "runtime/step_spec.h"
#include "runtime/trace/trace.h"

namespace stagehand::runtime::trace {

struct SimulationTraceOptions {
  int64_t step = 1;
  double us_per_unit = 1000;   // one cost-model unit shows as 1 ms
  int64_t transfer_bytes = 0;  // bytes of each transfer, if known
};

// Compute actions on each stage's compute lane (with sub-steps, SimResult::sub_steps: each
// on its lane, dispatch / combine on the a2a lane), each transfer as a send on its source and
// a receive on its destination, activation counts after every F / W / B, one step span
// [0, step_time]; virtual_time is set.
Trace TraceFromSimulation(const SimResult& result, const StepSpec& spec,
                          const SimulationTraceOptions& options = {});

}  // namespace stagehand::runtime::trace

#endif  // STAGEHAND_RUNTIME_TRACE_FROM_SIMULATION_H_
