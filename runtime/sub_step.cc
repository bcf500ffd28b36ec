// SubStep: text form, parsing and the split of a chunk's compute action into sub-steps.
#include "runtime/sub_step.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace stagehand::runtime {
namespace {

struct KindName {
  SubStepKind kind;
  absl::string_view name;
};

constexpr KindName kKindNames[] = {
    {SubStepKind::kAttention, "attn"},  {SubStepKind::kDispatch, "dispatch"},
    {SubStepKind::kExperts, "experts"}, {SubStepKind::kCombine, "combine"},
    {SubStepKind::kRest, "rest"},
};

}  // namespace

bool IsCommunication(SubStepKind kind) {
  return kind == SubStepKind::kDispatch || kind == SubStepKind::kCombine;
}

absl::string_view SubStepKindName(SubStepKind kind) {
  for (const KindName& k : kKindNames) {
    if (k.kind == kind) return k.name;
  }
  return "unknown";
}

std::string to_string(SubStepKind kind) { return std::string(SubStepKindName(kind)); }

absl::StatusOr<SubStepKind> ParseSubStepKind(absl::string_view name) {
  std::vector<absl::string_view> known;
  for (const KindName& k : kKindNames) {
    if (k.name == name) return k.kind;
    known.push_back(k.name);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown sub-step \"", name, "\" (known: ", absl::StrJoin(known, ", "), ")"));
}

std::string SubStepToString(const SubStep& step) {
  return absl::StrCat(ActionToString(step.action), " L", step.layer, " ",
                      SubStepKindName(step.part));
}

absl::StatusOr<SubStep> ParseSubStep(absl::string_view text) {
  const auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("ParseSubStep(\"", text, "\"): ", why));
  };
  std::vector<absl::string_view> tokens =
      absl::StrSplit(text, absl::ByAnyChar(" \t"), absl::SkipEmpty());
  if (tokens.size() < 3) {
    return bad("expected \"s<stage> <F|I|W|B> c<chunk> mb<microbatch> L<layer> <part>\"");
  }
  SubStep step;
  absl::string_view layer = tokens[tokens.size() - 2];
  if (!absl::ConsumePrefix(&layer, "L") || layer.empty() ||
      layer.find_first_not_of("0123456789") != absl::string_view::npos ||
      !absl::SimpleAtoi(layer, &step.layer)) {
    return bad(absl::StrCat("expected the layer as \"L<n>\" with n >= 0, got \"",
                            tokens[tokens.size() - 2], "\""));
  }
  absl::StatusOr<SubStepKind> part = ParseSubStepKind(tokens.back());
  if (!part.ok()) return bad(part.status().message());
  step.part = *part;
  tokens.resize(tokens.size() - 2);
  absl::StatusOr<Action> action = ParseAction(absl::StrJoin(tokens, " "));
  if (!action.ok()) return bad(action.status().message());
  if (!IsCompute(action->kind)) {
    return bad(absl::StrCat("only F, I, W and B split into sub-steps, not ",
                            ActionKindName(action->kind)));
  }
  step.action = *action;
  return step;
}

std::ostream& operator<<(std::ostream& os, const SubStep& step) {
  return os << SubStepToString(step);
}

absl::StatusOr<std::vector<SubStep>> SplitIntoSubSteps(const Action& action, int first_layer,
                                                       const std::vector<bool>& is_moe) {
  using K = SubStepKind;
  std::vector<K> moe_parts;
  switch (action.kind) {
    case ActionKind::kForward:
      moe_parts = {K::kAttention, K::kDispatch, K::kExperts, K::kCombine, K::kRest};
      break;
    case ActionKind::kBackwardInput:
    case ActionKind::kBackward:
      moe_parts = {K::kRest, K::kCombine, K::kExperts, K::kDispatch, K::kAttention};
      break;
    case ActionKind::kBackwardWeight:
      moe_parts = {K::kRest, K::kExperts, K::kAttention};
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("only F, I, W and B split into sub-steps, not ", ActionToString(action)));
  }
  std::vector<int> order(is_moe.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  if (action.kind != ActionKind::kForward) std::reverse(order.begin(), order.end());
  std::vector<SubStep> steps;
  for (int i : order) {
    if (!is_moe[i]) {
      steps.push_back({action, first_layer + i, K::kRest});
      continue;
    }
    for (K part : moe_parts) steps.push_back({action, first_layer + i, part});
  }
  return steps;
}

}  // namespace stagehand::runtime
