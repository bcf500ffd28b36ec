// ValidatePlan: the check every plan passes before anything runs, whether a planner made it
// or a file held it. Not a simulator of time: it checks order, completeness, memory and
// deadlock freedom with a unit-step dry run, and says exactly what is wrong.
#ifndef STAGEHAND_RUNTIME_PLAN_VALIDATION_H_
#define STAGEHAND_RUNTIME_PLAN_VALIDATION_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "runtime/schedule_table.h"
#include "runtime/step_spec.h"

namespace stagehand::runtime {

// OK iff `table` is a complete, runnable plan of `spec`:
//   1. it has one row per stage, and every action names a chunk that lives on its rank, a
//      microbatch of the step and a kind of the step's backward (I and W when split, B when
//      fused; a full B in a split step counts as its I then its W);
//   2. each rank runs, for each of its (chunk, microbatch), F once and then I once and W
//      once (or B once), a backward after its forward and a W after its I;
//   3. when spec.max_inflight > 0, no rank holds more activations (F done, W/B not);
//   4. a unit-step dry run finishes: no rank waits forever on another.
// Errors name the rank, the step (the table's column) and the action, say what the action
// waits for or what is missing, and end with the rank-by-step grid with the cell marked.
// Codes: InvalidArgument (1, 2, 4), ResourceExhausted (3).
//   5. in a compute_comms table (torch's lowered format), every SEND_F / RECV_F / SEND_B /
//      RECV_B cell is a transfer the step graph derives, on its rank, a SEND after what it
//      sends and a RECV before what it feeds, and none is missing; UNSHARD, RESHARD and
//      REDUCE_GRAD cells are ignored.
// A deadlock error suggests a reordering only after checking that the reordered plan passes
// all of the above; if no single move does, it says so.
absl::Status ValidatePlan(const StepSpec& spec, const ScheduleTable& table);

// A plan that passes ValidatePlan may still lose bitwise parity with the sequential run: the
// sequential run adds each chunk's weight gradients up in microbatch order, and a plan that
// runs a chunk's W's (or B's) in another order adds them up in that order. The warning names
// the first (earliest step) out-of-order pair, e.g. "rank 1, step 5: 1W0 runs after 1W1
// (step 3), ..."; nullopt when every chunk's W's and B's run in microbatch order.
std::optional<std::string> BitwiseParityWarning(const ScheduleTable& table);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_PLAN_VALIDATION_H_
