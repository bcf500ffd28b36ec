// Action: one step of a pipeline schedule as a small value type with a text form
// ("s1 F c0 mb3") that prints, parses back, orders and hashes. Not the step graph: see
// stage_state.h.
#ifndef STAGEHAND_RUNTIME_ACTION_H_
#define STAGEHAND_RUNTIME_ACTION_H_

#include <ostream>
#include <string>
#include <tuple>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stagehand::runtime {

// Text names, in order: F, I, W, B, SEND_F, RECV_F, SEND_B, RECV_B, REDUCE_GRAD, OPTIM.
enum class ActionKind {
  kForward,         // F: forward of one chunk for one microbatch
  kBackwardInput,   // B: input-gradient half of the backward
  kBackwardWeight,  // W: weight-gradient half of the backward
  kBackward,        // B: fused I+W
  kSendForward,     // SEND_F: send an activation; chunk = the destination chunk
  kRecvForward,     // RECV_F: receive an activation; chunk = the destination chunk
  kSendBackward,    // SEND_B: send a gradient; chunk = the destination chunk
  kRecvBackward,    // RECV_B: receive a gradient; chunk = the destination chunk
  kReduceGrad,      // REDUCE_GRAD: data-parallel gradient reduction, per stage
  kOptimizer,       // OPTIM: optimizer step, per stage
};

// REDUCE_GRAD and OPTIM are per stage: their canonical chunk and microbatch are 0 and
// their text form omits them.
struct Action {
  int stage = 0;
  ActionKind kind = ActionKind::kForward;
  int chunk = 0;
  int microbatch = 0;

  friend bool operator==(const Action& a, const Action& b) {
    return a.stage == b.stage && a.kind == b.kind && a.chunk == b.chunk &&
           a.microbatch == b.microbatch;
  }
  friend bool operator!=(const Action& a, const Action& b) { return !(a == b); }
  // Ordered by (stage, kind, chunk, microbatch).
  friend bool operator<(const Action& a, const Action& b) {
    return std::tie(a.stage, a.kind, a.chunk, a.microbatch) <
           std::tie(b.stage, b.kind, b.chunk, b.microbatch);
  }
  template <typename H>
  friend H AbslHashValue(H h, const Action& a) {
    return H::combine(std::move(h), a.stage, a.kind, a.chunk, a.microbatch);
  }
};

// F, I, W and B: the actions a planner chooses and a stage's compute lane runs.
bool IsCompute(ActionKind kind);
// REDUCE_GRAD and OPTIM: no chunk, no microbatch.
bool IsPerStage(ActionKind kind);

// "F", "I", "W", "B", "SEND_F", "RECV_F", "SEND_B", "RECV_B", "REDUCE_GRAD", "OPTIM".
absl::string_view ActionKindName(ActionKind kind);
absl::StatusOr<ActionKind> ParseActionKind(absl::string_view name);
// The same as ActionKindName, for CAF's message printing (found by argument lookup).
std::string to_string(ActionKind kind);

// "s1 F c0 mb3", "s2 SEND_F c1 mb0", "s0 REDUCE_GRAD".
std::string ActionToString(const Action& action);
// The same without the stage: "F c0 mb3", "REDUCE_GRAD".
std::string ActionToStringWithoutStage(const Action& action);
// Inverse of ActionToString; tokens are separated by spaces or tabs. InvalidArgument says
// which token is wrong and what was expected.
absl::StatusOr<Action> ParseAction(absl::string_view text);

std::ostream& operator<<(std::ostream& os, const Action& action);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_ACTION_H_
