// LowerToComputeComms: a compute_only schedule table lowered to torch's compute_comms format,
// as torch.distributed.pipelining's _PipelineScheduleRuntime lowers one (what torchtitan
// dumps). Not used to run anything: Stagehand derives its transfers from the step graph; this
// writes the files that --schedule must read, so that tests can pin them as goldens.
#ifndef STAGEHAND_RUNTIME_SCHEDULE_TABLE_COMMS_H_
#define STAGEHAND_RUNTIME_SCHEDULE_TABLE_COMMS_H_

#include "absl/status/statusor.h"
#include "runtime/schedule_table.h"

namespace stagehand::runtime {

// torch's three lowering passes, in its order:
//   1. per rank, _add_unshard_reshard (max_active_stages = 3): before each compute action,
//      RESHARD the active chunks that none of the next 3 distinct chunks of the row name,
//      UNSHARD those that are not active yet; RESHARD the rest at the end of the row;
//   2. per rank, _add_reduce_grad: REDUCE_GRAD of a chunk right after its M-th W or B;
//   3. across ranks, _add_send_recv: ranks in turn, each takes its next action once its
//      inputs are scheduled on its own row (a RECV, or the producer on the same rank), and a
//      cross-rank F / I / B is followed by its SEND on the row and its RECV on the peer's.
// Idle cells are dropped, as torch drops None. One difference: where torch writes the
// end-of-row RESHARDs in Python's set order, this writes them in the order the chunks were
// unsharded. InvalidArgument for a table SpecFromTable refuses or that cannot be lowered
// (a rank would wait forever: torch's "Malformed compute schedule").
absl::StatusOr<ScheduleTable> LowerToComputeComms(const ScheduleTable& compute_only);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_SCHEDULE_TABLE_COMMS_H_
