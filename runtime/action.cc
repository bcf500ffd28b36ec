// Action: text form, parsing and kind predicates for the schedule IR value type.
// Not a schedule or a validator: ParseAction checks the syntax of one action, nothing more.
#include "runtime/action.h"

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace stagehand::runtime {
namespace {

struct KindName {
  ActionKind kind;
  absl::string_view name;
};

constexpr KindName kKindNames[] = {
    {ActionKind::kForward, "F"},
    {ActionKind::kBackwardInput, "I"},
    {ActionKind::kBackwardWeight, "W"},
    {ActionKind::kBackward, "B"},
    {ActionKind::kSendForward, "SEND_F"},
    {ActionKind::kRecvForward, "RECV_F"},
    {ActionKind::kSendBackward, "SEND_B"},
    {ActionKind::kRecvBackward, "RECV_B"},
    {ActionKind::kReduceGrad, "REDUCE_GRAD"},
    {ActionKind::kOptimizer, "OPTIM"},
};

std::string KnownKindNames() {
  std::vector<absl::string_view> names;
  for (const KindName& k : kKindNames) names.push_back(k.name);
  return absl::StrJoin(names, ", ");
}

// Parses "<prefix><non-negative int>", e.g. "mb3"; `what` names the field for errors.
absl::StatusOr<int> ParseIndexToken(absl::string_view text, absl::string_view token,
                                    absl::string_view prefix, absl::string_view what) {
  absl::string_view digits = token;
  int value = -1;
  const bool ok = absl::ConsumePrefix(&digits, prefix) && !digits.empty() &&
                  digits.find_first_not_of("0123456789") == absl::string_view::npos &&
                  absl::SimpleAtoi(digits, &value);
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat("ParseAction(\"", text, "\"): expected ", what,
                                                   " as \"", prefix, "<n>\" with n >= 0, got \"",
                                                   token, "\""));
  }
  return value;
}

}  // namespace

bool IsCompute(ActionKind kind) {
  switch (kind) {
    case ActionKind::kForward:
    case ActionKind::kBackwardInput:
    case ActionKind::kBackwardWeight:
    case ActionKind::kBackward:
      return true;
    default:
      return false;
  }
}

bool IsPerStage(ActionKind kind) {
  return kind == ActionKind::kReduceGrad || kind == ActionKind::kOptimizer;
}

absl::string_view ActionKindName(ActionKind kind) {
  for (const KindName& k : kKindNames) {
    if (k.kind == kind) return k.name;
  }
  return "UNKNOWN_KIND";
}

std::string to_string(ActionKind kind) { return std::string(ActionKindName(kind)); }

absl::StatusOr<ActionKind> ParseActionKind(absl::string_view name) {
  for (const KindName& k : kKindNames) {
    if (k.name == name) return k.kind;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown action kind \"", name, "\" (known: ", KnownKindNames(), ")"));
}

std::string ActionToStringWithoutStage(const Action& action) {
  if (IsPerStage(action.kind)) return std::string(ActionKindName(action.kind));
  return absl::StrCat(ActionKindName(action.kind), " c", action.chunk, " mb", action.microbatch);
}

std::string ActionToString(const Action& action) {
  return absl::StrCat("s", action.stage, " ", ActionToStringWithoutStage(action));
}

absl::StatusOr<Action> ParseAction(absl::string_view text) {
  const std::vector<absl::string_view> tokens =
      absl::StrSplit(text, absl::ByAnyChar(" \t"), absl::SkipEmpty());
  const auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("ParseAction(\"", text, "\"): ", why));
  };
  if (tokens.size() < 2) {
    return bad(
        "expected \"s<stage> <KIND> c<chunk> mb<microbatch>\" or \"s<stage> "
        "REDUCE_GRAD|OPTIM\"");
  }
  Action action;
  absl::StatusOr<int> stage = ParseIndexToken(text, tokens[0], "s", "the stage");
  if (!stage.ok()) return stage.status();
  action.stage = *stage;

  absl::StatusOr<ActionKind> kind = ParseActionKind(tokens[1]);
  if (!kind.ok()) return bad(kind.status().message());
  action.kind = *kind;

  if (IsPerStage(action.kind)) {
    if (tokens.size() != 2) {
      return bad(
          absl::StrCat(tokens[1], " takes no chunk or microbatch, got extra \"", tokens[2], "\""));
    }
    return action;
  }
  if (tokens.size() != 4) {
    return bad(absl::StrCat(tokens[1],
                            " expects exactly \"c<chunk> mb<microbatch>\" after it, got ",
                            tokens.size() - 2, " token(s)"));
  }
  absl::StatusOr<int> chunk = ParseIndexToken(text, tokens[2], "c", "the chunk");
  if (!chunk.ok()) return chunk.status();
  absl::StatusOr<int> microbatch = ParseIndexToken(text, tokens[3], "mb", "the microbatch");
  if (!microbatch.ok()) return microbatch.status();
  action.chunk = *chunk;
  action.microbatch = *microbatch;
  return action;
}

std::ostream& operator<<(std::ostream& os, const Action& action) {
  return os << ActionToString(action);
}

}  // namespace stagehand::runtime
