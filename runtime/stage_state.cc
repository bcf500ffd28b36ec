// StageState: dependency tracking of one stage for one step, and its waiting report.
// Not a planner and not a transport: it answers "what may run" and "what must be sent".
#include "runtime/stage_state.h"

#include <algorithm>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace stagehand::runtime {
namespace {

constexpr int kMaxReadyListed = 4;    // DescribeWaiting: ready actions named
constexpr int kMaxWaitingListed = 3;  // DescribeWaiting: blocked actions named

bool IsBackward(ActionKind kind) {
  return kind == ActionKind::kBackwardInput || kind == ActionKind::kBackward;
}
bool FreesActivation(ActionKind kind) {
  return kind == ActionKind::kBackwardWeight || kind == ActionKind::kBackward;
}

}  // namespace

Action SendAction(const Transfer& transfer) {
  return Action{transfer.from_stage, transfer.kind, transfer.chunk, transfer.microbatch};
}

Action RecvAction(const Transfer& transfer) {
  const ActionKind recv = transfer.kind == ActionKind::kSendForward ? ActionKind::kRecvForward
                                                                    : ActionKind::kRecvBackward;
  return Action{transfer.to_stage, recv, transfer.chunk, transfer.microbatch};
}

std::string TransferToString(const Transfer& transfer) {
  return absl::StrCat(ActionToString(SendAction(transfer)), " -> s", transfer.to_stage);
}

std::ostream& operator<<(std::ostream& os, const Transfer& transfer) {
  return os << TransferToString(transfer);
}

StageState::StageState(const StepSpec& spec, int stage)
    : spec_(spec), stage_(stage), local_index_(std::max(spec.num_chunks, 0), -1) {
  for (int c = 0; c < static_cast<int>(spec_.chunk_to_stage.size()) && c < spec_.num_chunks; ++c) {
    if (spec_.chunk_to_stage[c] != stage_) continue;
    local_index_[c] = static_cast<int>(chunks_.size());
    chunks_.push_back(c);
  }
  const int num_microbatches = std::max(spec_.num_microbatches, 0);
  cells_.resize(chunks_.size() * num_microbatches);
  for (int c : chunks_) {
    for (int mb = 0; mb < num_microbatches; ++mb) {
      cell(c, mb).has_activation = (c == 0);                   // tokens are local
      cell(c, mb).has_gradient = (c == spec_.num_chunks - 1);  // the loss is local
    }
  }
  // Per (chunk, microbatch): F, then I and W (split) or B (fused).
  num_actions_ = static_cast<int>(cells_.size()) * (spec_.split_backward ? 3 : 2);
  for (int c : chunks_) {
    for (int mb = 0; mb < num_microbatches; ++mb) RefreshReady(c, mb);
  }
}

void StageState::RefreshReady(int chunk, int microbatch) {
  for (ActionKind kind : {ActionKind::kForward, BackwardKind(), ActionKind::kBackwardWeight}) {
    if (kind == ActionKind::kBackwardWeight && !spec_.split_backward) continue;
    RefreshReady(Action{stage_, kind, chunk, microbatch});
  }
}

void StageState::RefreshReady(const Action& action) {
  // Every entry is of this stage: (kind, chunk, microbatch) orders them as Action's <.
  const auto before = [](const Action& a, const Action& b) {
    return std::tie(a.kind, a.chunk, a.microbatch) < std::tie(b.kind, b.chunk, b.microbatch);
  };
  const auto at = std::lower_bound(ready_.begin(), ready_.end(), action, before);
  const bool listed = at != ready_.end() && *at == action;
  const bool ready = IsReady(action);
  if (ready && !listed) {
    ready_.insert(at, action);
  } else if (!ready && listed) {
    ready_.erase(at);
  }
}

absl::StatusOr<StageState> StageState::Create(const StepSpec& spec, int stage) {
  if (absl::Status status = ValidateStepSpec(spec); !status.ok()) return status;
  if (stage < 0 || stage >= spec.num_stages) {
    return absl::InvalidArgumentError(absl::StrCat(
        "StageState: stage ", stage, " is not in [0, num_stages = ", spec.num_stages, ")"));
  }
  return StageState(spec, stage);
}

const StageState::Cell& StageState::cell(int chunk, int microbatch) const {
  return cells_[local_index_[chunk] * spec_.num_microbatches + microbatch];
}
StageState::Cell& StageState::cell(int chunk, int microbatch) {
  return cells_[local_index_[chunk] * spec_.num_microbatches + microbatch];
}

bool StageState::Belongs(const Action& action) const {
  if (action.stage != stage_ || action.chunk < 0 || action.chunk >= spec_.num_chunks ||
      local_index_[action.chunk] < 0 || action.microbatch < 0 ||
      action.microbatch >= spec_.num_microbatches) {
    return false;
  }
  switch (action.kind) {
    case ActionKind::kForward:
      return true;
    case ActionKind::kBackwardInput:
    case ActionKind::kBackwardWeight:
      return spec_.split_backward;
    case ActionKind::kBackward:
      return !spec_.split_backward;
    default:
      return false;
  }
}

absl::Status StageState::CheckBelongs(const Action& action) const {
  if (Belongs(action)) return absl::OkStatus();
  const auto bad = [&](auto&&... why) {
    return absl::InvalidArgumentError(
        absl::StrCat(ActionToString(action), " is not an action of stage ", stage_, ": ", why...));
  };
  if (action.stage != stage_) return bad("it names stage ", action.stage);
  if (!IsCompute(action.kind)) return bad("only F, I, W and B are compute actions");
  if (spec_.split_backward && action.kind == ActionKind::kBackward) {
    return bad("split_backward is true, so the backward is I then W, not B");
  }
  if (!spec_.split_backward &&
      (action.kind == ActionKind::kBackwardInput || action.kind == ActionKind::kBackwardWeight)) {
    return bad("split_backward is false, so the backward is the fused B");
  }
  if (action.chunk < 0 || action.chunk >= spec_.num_chunks || local_index_[action.chunk] < 0) {
    return bad("chunk ", action.chunk,
               " is not on this stage (chunks here: ", absl::StrJoin(chunks_, ", "), ")");
  }
  if (action.microbatch < 0 || action.microbatch >= spec_.num_microbatches) {
    return bad("microbatch ", action.microbatch,
               " is not in [0, num_microbatches = ", spec_.num_microbatches, ")");
  }
  return absl::OkStatus();
}

absl::Status StageState::InputArrived(ActionKind kind, int chunk, int microbatch) {
  const bool forward = kind == ActionKind::kForward;
  if (!forward && kind != ActionKind::kBackwardInput) {
    return absl::InvalidArgumentError(absl::StrCat(
        "s", stage_, " InputArrived: kind must be F (an activation) or B (a gradient), got ",
        ActionKindName(kind)));
  }
  const char* what = forward ? "activation" : "gradient";
  const auto bad = [&](auto&&... why) {
    return absl::InvalidArgumentError(absl::StrCat("s", stage_, " InputArrived: ", what, " for c",
                                                   chunk, " mb", microbatch, " ", why...));
  };
  if (chunk < 0 || chunk >= spec_.num_chunks || local_index_[chunk] < 0) {
    return bad("but chunk ", chunk,
               " is not on this stage (chunks here: ", absl::StrJoin(chunks_, ", "), ")");
  }
  if (microbatch < 0 || microbatch >= spec_.num_microbatches) {
    return bad("but microbatch ", microbatch,
               " is not in [0, num_microbatches = ", spec_.num_microbatches, ")");
  }
  const int producer = forward ? chunk - 1 : chunk + 1;
  if (producer < 0) return bad("but chunk 0 reads its tokens locally and takes no activation");
  if (producer >= spec_.num_chunks) {
    return bad("but the last chunk computes its own loss gradient");
  }
  if (spec_.chunk_to_stage[producer] == stage_) {
    return bad("but it comes from c", producer,
               " on this same stage, which Finished() delivers locally");
  }
  Cell& target = cell(chunk, microbatch);
  bool& has = forward ? target.has_activation : target.has_gradient;
  if (has) {
    return absl::AlreadyExistsError(absl::StrCat("s", stage_, " InputArrived: duplicate ", what,
                                                 " for c", chunk, " mb", microbatch));
  }
  has = true;
  RefreshReady(Action{stage_, forward ? ActionKind::kForward : BackwardKind(), chunk, microbatch});
  return absl::OkStatus();
}

absl::Status StageState::InputArrived(const Transfer& transfer) {
  if (transfer.to_stage != stage_) {
    return absl::InvalidArgumentError(absl::StrCat("s", stage_,
                                                   " InputArrived: ", TransferToString(transfer),
                                                   " is addressed to stage ", transfer.to_stage));
  }
  if (transfer.kind != ActionKind::kSendForward && transfer.kind != ActionKind::kSendBackward) {
    return absl::InvalidArgumentError(
        absl::StrCat("s", stage_, " InputArrived: a transfer's kind is SEND_F or SEND_B, got ",
                     ActionKindName(transfer.kind)));
  }
  return InputArrived(
      transfer.kind == ActionKind::kSendForward ? ActionKind::kForward : ActionKind::kBackwardInput,
      transfer.chunk, transfer.microbatch);
}

bool StageState::IsReady(const Action& action) const {
  const Cell& x = cell(action.chunk, action.microbatch);
  switch (action.kind) {
    case ActionKind::kForward:
      return x.has_activation && !x.forward_started;
    case ActionKind::kBackwardInput:
    case ActionKind::kBackward:
      return x.forward_finished && x.has_gradient && !x.backward_started;
    case ActionKind::kBackwardWeight:
      return x.backward_finished && !x.weight_started;
    default:
      return false;
  }
}

std::string StageState::WaitReason(const Action& action) const {
  const Cell& x = cell(action.chunk, action.microbatch);
  const auto local = [&](ActionKind kind) {
    return absl::StrCat("waits for ",
                        ActionToString(Action{stage_, kind, action.chunk, action.microbatch}));
  };
  const auto input = [&](const char* what, int producer) {
    return absl::StrCat("waits for ", what, " from s", spec_.chunk_to_stage[producer], " (c",
                        producer, " mb", action.microbatch, ")");
  };
  switch (action.kind) {
    case ActionKind::kForward:
      if (!x.has_activation) return input("activation", action.chunk - 1);
      return "";
    case ActionKind::kBackwardInput:
    case ActionKind::kBackward:
      if (!x.forward_finished) return local(ActionKind::kForward);
      if (!x.has_gradient) return input("gradient", action.chunk + 1);
      return "";
    case ActionKind::kBackwardWeight:
      if (!x.backward_finished) return local(ActionKind::kBackwardInput);
      return "";
    default:
      return "";
  }
}

absl::Status StageState::CheckStart(const Action& action) const {
  if (!Belongs(action)) return CheckBelongs(action);
  if (!IsReady(action) && HasStarted(action)) {
    return absl::FailedPreconditionError(absl::StrCat(
        ActionToString(action), " has already ", HasFinished(action) ? "finished" : "started"));
  }
  if (!IsReady(action)) {
    return absl::FailedPreconditionError(
        absl::StrCat(ActionToString(action), " is not ready: it ", WaitReason(action)));
  }
  if (action.kind == ActionKind::kForward && spec_.max_inflight > 0) {
    const int forwards_running = forwards_running_;
    const int held = inflight_ + forwards_running + 1;
    if (held > spec_.max_inflight) {
      return absl::ResourceExhaustedError(
          absl::StrCat(ActionToString(action), " would make stage ", stage_, " hold ", held,
                       " activations, above max_inflight = ", spec_.max_inflight, " (", inflight_,
                       " held, ", forwards_running, " forward(s) running)"));
    }
  }
  return absl::OkStatus();
}

absl::Status StageState::Started(const Action& action) {
  if (absl::Status status = CheckStart(action); !status.ok()) return status;
  Cell& x = cell(action.chunk, action.microbatch);
  switch (action.kind) {
    case ActionKind::kForward:
      x.forward_started = true;
      ++forwards_running_;
      break;
    case ActionKind::kBackwardInput:
      x.backward_started = true;
      break;
    case ActionKind::kBackwardWeight:
      x.weight_started = true;
      break;
    default:  // kBackward, fused
      x.backward_started = x.weight_started = true;
      break;
  }
  ++num_running_;
  RefreshReady(action);  // no longer ready; nothing else in the cell changes
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Transfer>> StageState::Finished(const Action& action) {
  if (!Belongs(action)) return CheckBelongs(action);
  if (!HasStarted(action) || HasFinished(action)) {
    return absl::FailedPreconditionError(
        absl::StrCat(ActionToString(action), " finished but was not running (it ",
                     HasFinished(action) ? "had already finished)" : "never started)"));
  }
  Cell& x = cell(action.chunk, action.microbatch);
  switch (action.kind) {
    case ActionKind::kForward:
      x.forward_finished = true;
      --forwards_running_;
      break;
    case ActionKind::kBackwardInput:
      x.backward_finished = true;
      break;
    case ActionKind::kBackwardWeight:
      x.weight_finished = true;
      break;
    default:  // kBackward, fused
      x.backward_finished = x.weight_finished = true;
      break;
  }
  --num_running_;
  ++num_finished_;
  if (action.kind == ActionKind::kForward) {
    ++inflight_;
    peak_inflight_ = std::max(peak_inflight_, inflight_);
  }
  if (FreesActivation(action.kind)) --inflight_;
  // F finished: its I / B may run; I finished: its W. A finished W or B unblocks nothing here.
  if (action.kind == ActionKind::kForward) {
    RefreshReady(Action{stage_, BackwardKind(), action.chunk, action.microbatch});
  } else if (action.kind == ActionKind::kBackwardInput) {
    RefreshReady(Action{stage_, ActionKind::kBackwardWeight, action.chunk, action.microbatch});
  }

  std::vector<Transfer> transfers;
  int consumer = -1;  // the chunk that receives this action's output
  ActionKind send = ActionKind::kSendForward;
  if (action.kind == ActionKind::kForward && action.chunk + 1 < spec_.num_chunks) {
    consumer = action.chunk + 1;
  } else if (IsBackward(action.kind) && action.chunk > 0) {
    consumer = action.chunk - 1;
    send = ActionKind::kSendBackward;
  }
  if (consumer >= 0) {
    const int to_stage = spec_.chunk_to_stage[consumer];
    if (to_stage == stage_) {
      Cell& next = cell(consumer, action.microbatch);
      const bool forward = send == ActionKind::kSendForward;
      (forward ? next.has_activation : next.has_gradient) = true;
      RefreshReady(Action{stage_, forward ? ActionKind::kForward : BackwardKind(), consumer,
                          action.microbatch});
    } else {
      transfers.push_back(Transfer{send, stage_, to_stage, consumer, action.microbatch});
    }
  }
  return transfers;
}

bool StageState::HasStarted(const Action& action) const {
  if (!Belongs(action)) return false;
  const Cell& x = cell(action.chunk, action.microbatch);
  switch (action.kind) {
    case ActionKind::kForward:
      return x.forward_started;
    case ActionKind::kBackwardInput:
    case ActionKind::kBackward:
      return x.backward_started;
    default:
      return x.weight_started;
  }
}

bool StageState::HasFinished(const Action& action) const {
  if (!Belongs(action)) return false;
  const Cell& x = cell(action.chunk, action.microbatch);
  switch (action.kind) {
    case ActionKind::kForward:
      return x.forward_finished;
    case ActionKind::kBackwardInput:
    case ActionKind::kBackward:
      return x.backward_finished;
    default:
      return x.weight_finished;
  }
}

std::vector<Action> StageState::RunningActions() const {
  std::vector<Action> running;
  if (num_running_ == 0) return running;
  for (int c : chunks_) {
    for (int mb = 0; mb < spec_.num_microbatches; ++mb) {
      const Cell& x = cell(c, mb);
      if (x.forward_started && !x.forward_finished) {
        running.push_back(Action{stage_, ActionKind::kForward, c, mb});
      }
      if (x.backward_started && !x.backward_finished) {
        running.push_back(Action{
            stage_, spec_.split_backward ? ActionKind::kBackwardInput : ActionKind::kBackward, c,
            mb});
      }
      if (spec_.split_backward && x.weight_started && !x.weight_finished) {
        running.push_back(Action{stage_, ActionKind::kBackwardWeight, c, mb});
      }
    }
  }
  std::sort(running.begin(), running.end());
  return running;
}

bool StageState::NextOfCell(int chunk, int microbatch, Action* next) const {
  const Cell& x = cell(chunk, microbatch);
  ActionKind kind;
  if (!x.forward_started) {
    kind = ActionKind::kForward;
  } else if (!x.backward_started) {
    kind = spec_.split_backward ? ActionKind::kBackwardInput : ActionKind::kBackward;
  } else if (spec_.split_backward && !x.weight_started) {
    kind = ActionKind::kBackwardWeight;
  } else {
    return false;
  }
  *next = Action{stage_, kind, chunk, microbatch};
  return true;
}

std::string StageState::DescribeWaiting() const {
  const std::string prefix = absl::StrCat("s", stage_, ": ");
  if (Done()) return absl::StrCat(prefix, "done");
  std::vector<std::string> parts;
  const auto names = [](const std::vector<Action>& actions, int limit) {
    std::vector<std::string> listed;
    for (int i = 0; i < static_cast<int>(actions.size()) && i < limit; ++i) {
      listed.push_back(ActionToStringWithoutStage(actions[i]));
    }
    if (static_cast<int>(actions.size()) > limit) {
      listed.push_back(absl::StrCat("+", actions.size() - limit, " more"));
    }
    return absl::StrJoin(listed, ", ");
  };
  const std::vector<Action> running = RunningActions();
  if (!running.empty()) parts.push_back(absl::StrCat("running ", names(running, kMaxReadyListed)));
  const std::vector<Action> ready = Ready();
  if (!ready.empty()) {
    parts.push_back(absl::StrCat("ready, not started: ", names(ready, kMaxReadyListed)));
  }
  // Blocked: per (chunk, microbatch), its first not-started action, if neither ready nor
  // behind a running one; microbatch-major so that the earliest work comes first.
  std::vector<std::string> blocked;
  int num_blocked = 0;
  for (int mb = 0; mb < spec_.num_microbatches; ++mb) {
    for (int c : chunks_) {
      Action next;
      if (!NextOfCell(c, mb, &next) || IsReady(next)) continue;
      const Cell& x = cell(c, mb);
      const bool behind_running =  // its own predecessor runs, listed above
          (IsBackward(next.kind) && !x.forward_finished) ||
          (next.kind == ActionKind::kBackwardWeight && !x.backward_finished);
      if (behind_running) continue;
      if (++num_blocked <= kMaxWaitingListed) {
        blocked.push_back(absl::StrCat(ActionToString(next), " ", WaitReason(next)));
      }
    }
  }
  for (std::string& line : blocked) parts.push_back(std::move(line));
  if (num_blocked > kMaxWaitingListed) {
    parts.push_back(absl::StrCat("+", num_blocked - kMaxWaitingListed, " more waiting"));
  }
  return absl::StrCat(prefix, absl::StrJoin(parts, "; "));
}

}  // namespace stagehand::runtime
