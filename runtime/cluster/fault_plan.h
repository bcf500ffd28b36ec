// Fault injection for the cluster's end-to-end tests, behind one documented switch: the
// STAGEHAND_FAULTS environment variable, read once by tools/worker. Unset (always, outside
// tests), no fault exists. tools/launch (one process: rank 0) reads it too. Not a chaos
// tool: five faults, each aimed at one rank, stage or batch.
//
//   STAGEHAND_FAULTS="kill=R:S[:A],withhold=R:N,flip=G:S,nan=S:M,slow=G:MS"
//     kill=R:S[:A]  rank R kills itself (SIGKILL) in the forward pass of microbatch 1 of step
//                   S, while the launcher's restart count (STAGEHAND_RESTART) is below A
//                   (default 1: the first attempt only).
//     withhold=R:N  rank R never posts its Nth receive (tests of the hang report).
//     flip=G:S      a transient fault: stage G (on whichever rank holds it) flips one bit of
//                   a gradient in the first run of step S only (runtime/train/stage_work.h).
//     nan=S:M       a persistent fault: microbatch M of step S is poisoned (NaN after the
//                   embedding) in every run of the step. Both test the rerun state machine.
//     slow=G:MS     stage G's every forward takes MS milliseconds longer (a straggler, for
//                   --log_timers).
#ifndef STAGEHAND_RUNTIME_CLUSTER_FAULT_PLAN_H_
#define STAGEHAND_RUNTIME_CLUSTER_FAULT_PLAN_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace stagehand::runtime {

inline constexpr char kFaultsVar[] = "STAGEHAND_FAULTS";

// The faults of one rank (all zero: none).
struct FaultPlan {
  int64_t kill_at_step = 0;    // SIGKILL in this step's forward of microbatch 1 (0: off)
  int withhold_receive = 0;    // never post the Nth receive (0: off)
  int flip_stage = -1;         // the stage whose gradient gets a flipped bit (-1: off)
  int64_t flip_at_step = 0;    // ... in the first run of this step
  int64_t nan_at_step = 0;     // the step whose batch is poisoned (0: off)
  int nan_microbatch = 0;      // ... in this microbatch
  int slow_stage = -1;         // the stage whose forwards are slowed (-1: off)
  double slow_forward_ms = 0;  // ... by this much each
};

// Rank `rank`'s faults in `spec` (the variable's value; empty: none) on restart `restart`.
// InvalidArgument for anything malformed: a test that meant a fault must not run without it.
absl::StatusOr<FaultPlan> FaultPlanFromSpec(const std::string& spec, int rank, int restart);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_CLUSTER_FAULT_PLAN_H_
