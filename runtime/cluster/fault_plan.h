// Fault injection for the cluster's end-to-end tests, behind one documented switch: the
// STAGEHAND_FAULTS environment variable, read once by tools/worker. Unset (always, outside
// tests), no fault exists. Not a chaos tool: two faults, each aimed at one rank.
//
//   STAGEHAND_FAULTS="kill=R:S[:A],withhold=R:N"
//     kill=R:S[:A]  rank R kills itself (SIGKILL) in the forward pass of microbatch 1 of step
//                   S, while the launcher's restart count (STAGEHAND_RESTART) is below A
//                   (default 1: the first attempt only).
//     withhold=R:N  rank R never posts its Nth receive (tests of the hang report).
#ifndef STAGEHAND_RUNTIME_CLUSTER_FAULT_PLAN_H_
#define STAGEHAND_RUNTIME_CLUSTER_FAULT_PLAN_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace stagehand::runtime {

inline constexpr char kFaultsVar[] = "STAGEHAND_FAULTS";

// The faults of one rank (all zero: none).
struct FaultPlan {
  int64_t kill_at_step = 0;  // SIGKILL in this step's forward of microbatch 1 (0: off)
  int withhold_receive = 0;  // never post the Nth receive (0: off)
};

// Rank `rank`'s faults in `spec` (the variable's value; empty: none) on restart `restart`.
// InvalidArgument for anything malformed: a test that meant a fault must not run without it.
absl::StatusOr<FaultPlan> FaultPlanFromSpec(const std::string& spec, int rank, int restart);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_CLUSTER_FAULT_PLAN_H_
