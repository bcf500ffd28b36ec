// Fine-grained callables in the schedule IR: a sub-step of one layer within a chunk's F, I, W
// or B (attention, MoE dispatch, experts, combine, the rest), as a value type with a text form
// ("s1 F c0 mb3 L2 dispatch") that prints and parses back, and a chunk's compute action split
// into its sub-steps in dependency order. Data structures only: no planner and no actor runs
// these yet. Not the CSV pair form "(0F1;7B0)OVERLAP_F_B", which schedule_table.h reads.
#ifndef STAGEHAND_RUNTIME_SUB_STEP_H_
#define STAGEHAND_RUNTIME_SUB_STEP_H_

#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "runtime/action.h"

namespace stagehand::runtime {

// Text names, in order: attn, dispatch, experts, combine, rest.
enum class SubStepKind {
  kAttention,  // attn: norm 1, attention, residual, norm 2 and (MoE) the router
  kDispatch,   // dispatch: tokens to their experts (an all-to-all under expert parallelism)
  kExperts,    // experts: the expert MLPs on their rows
  kCombine,    // combine: expert rows back to tokens (an all-to-all under expert parallelism)
  kRest,       // rest: an MoE layer's shared expert and residual; a layer not split, whole
};

// dispatch and combine: the sub-steps that run on communication lanes.
bool IsCommunication(SubStepKind kind);
absl::string_view SubStepKindName(SubStepKind kind);
absl::StatusOr<SubStepKind> ParseSubStepKind(absl::string_view name);
// The same as SubStepKindName, for CAF's message printing (found by argument lookup).
std::string to_string(SubStepKind kind);

// One sub-step: `part` of global layer `layer` within the compute action `action` (F, I, W or
// B of one chunk and microbatch).
struct SubStep {
  Action action;
  int layer = 0;
  SubStepKind part = SubStepKind::kRest;

  friend bool operator==(const SubStep& a, const SubStep& b) {
    return a.action == b.action && a.layer == b.layer && a.part == b.part;
  }
  friend bool operator!=(const SubStep& a, const SubStep& b) { return !(a == b); }
  friend bool operator<(const SubStep& a, const SubStep& b) {
    return std::tie(a.action, a.layer, a.part) < std::tie(b.action, b.layer, b.part);
  }
  template <typename H>
  friend H AbslHashValue(H h, const SubStep& s) {
    return H::combine(std::move(h), s.action, s.layer, s.part);
  }
};

// "s1 F c0 mb3 L2 dispatch": the action's text, then "L<layer>" and the part's name.
std::string SubStepToString(const SubStep& step);
// Inverse of SubStepToString. InvalidArgument names the wrong token: an action that is not
// F / I / W / B, a missing or malformed "L<n>", an unknown part.
absl::StatusOr<SubStep> ParseSubStep(absl::string_view text);
std::ostream& operator<<(std::ostream& os, const SubStep& step);

// A chunk's compute action split into sub-steps, in the order their dependencies allow, for
// the chunk's layers first_layer, first_layer + 1, ... (`is_moe[i]`: layer first_layer + i
// has an MoE MLP). Only MoE layers split (there is communication to hide); every other layer
// is one `rest`.
//   F:     layers in order; an MoE layer as attn, dispatch, experts, combine, rest.
//   I / B: layers in reverse; an MoE layer as rest, combine, experts, dispatch, attn.
//   W:     layers in reverse; an MoE layer as rest, experts, attn (W moves no tokens).
// InvalidArgument for an action that is not F, I, W or B.
absl::StatusOr<std::vector<SubStep>> SplitIntoSubSteps(const Action& action, int first_layer,
                                                       const std::vector<bool>& is_moe);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_SUB_STEP_H_
