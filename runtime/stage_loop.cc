// StageLoop: the one stage loop shared by the actor runtime and the simulator.
// Not a planner and not a transport: it asks the planner and names what moves.
#include "runtime/stage_loop.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {
namespace {

// The key of a hand-off by the action it unblocks: F for an activation, I/B for a gradient.
std::tuple<ActionKind, int, int> HandOffKey(const Transfer& t) {
  return {t.kind, t.chunk, t.microbatch};
}

// The hand-off that `action` still waits for, as a key: an F waits for an activation, an I
// or B for a gradient; W never waits for an input.
std::optional<std::tuple<ActionKind, int, int>> InputKey(const Action& action) {
  switch (action.kind) {
    case ActionKind::kForward:
      return std::make_tuple(ActionKind::kSendForward, action.chunk, action.microbatch);
    case ActionKind::kBackwardInput:
    case ActionKind::kBackward:
      return std::make_tuple(ActionKind::kSendBackward, action.chunk, action.microbatch);
    default:
      return std::nullopt;
  }
}

// Whether `action`'s input is made on `action`'s own stage, so that it can start without
// waiting for another stage: an F of the first chunk (data) or after a chunk held here; an I
// or B of the loss chunk (its own F's loss) or before a chunk held here.
bool InputFromThisStage(const StepSpec& spec, const Action& action) {
  if (action.kind == ActionKind::kForward) {
    return action.chunk == 0 || spec.chunk_to_stage[action.chunk - 1] == action.stage;
  }
  if (action.kind == ActionKind::kBackwardInput || action.kind == ActionKind::kBackward) {
    return action.chunk + 1 == spec.num_chunks ||
           spec.chunk_to_stage[action.chunk + 1] == action.stage;
  }
  return false;
}

}  // namespace

std::optional<Transfer> LocalHandOff(const StepSpec& spec, const Action& finished) {
  int consumer = -1;
  ActionKind kind = ActionKind::kSendForward;
  if (finished.kind == ActionKind::kForward) {
    consumer = finished.chunk + 1;
  } else if (finished.kind == ActionKind::kBackwardInput ||
             finished.kind == ActionKind::kBackward) {
    consumer = finished.chunk - 1;
    kind = ActionKind::kSendBackward;
  }
  if (consumer < 0 || consumer >= spec.num_chunks ||
      spec.chunk_to_stage[consumer] != finished.stage) {
    return std::nullopt;
  }
  return Transfer{kind, finished.stage, finished.stage, consumer, finished.microbatch};
}

absl::StatusOr<StageLoop> StageLoop::Create(const StepSpec& spec, int stage,
                                            std::unique_ptr<Planner> planner) {
  ASSIGN_OR_RETURN(StageState state, StageState::Create(spec, stage));
  if (planner == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("stage ", stage, ": no planner"));
  }
  return StageLoop(std::move(state), std::move(planner));
}

StageLoop::StageLoop(StageState state, std::unique_ptr<Planner> planner)
    : state_(std::move(state)), planner_(std::move(planner)) {}

std::vector<Action> StageLoop::Ready() const {
  std::vector<Action> ready = state_.Ready();
  if (pending_hand_offs_.empty()) return ready;
  ready.erase(std::remove_if(ready.begin(), ready.end(),
                             [&](const Action& a) {
                               const auto key = InputKey(a);
                               return key && pending_hand_offs_.count(*key) > 0;
                             }),
              ready.end());
  return ready;
}

const std::vector<Action>& StageLoop::ReadyView() {
  if (pending_hand_offs_.empty()) return state_.Ready();
  filtered_ready_ = Ready();
  return filtered_ready_;
}

absl::Status StageLoop::StartChoice(const Action& choice) {
  absl::Status status = state_.Started(choice);
  if (status.ok() && graph_) status = graph_->Start(choice);
  if (!status.ok()) {
    return absl::Status(status.code(),
                        absl::StrCat("the planner of stage ", state_.stage(), " picked ",
                                     ActionToString(choice), ": ", status.message()));
  }
  if (graph_) {
    lane_busy_ = true;
  } else {
    ++running_;
  }
  return absl::OkStatus();
}

absl::Status StageLoop::SetLaneDepth(int depth) {
  if (depth < 1 || depth > 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("stage ", state_.stage(), ": lane depth ", depth, " is not in [1, 8]"));
  }
  if (state_.Running()) {
    return absl::FailedPreconditionError(
        absl::StrCat("stage ", state_.stage(), ": lane depth set while an action runs"));
  }
  lane_depth_ = depth;
  return absl::OkStatus();
}

absl::StatusOr<std::optional<Action>> StageLoop::Next() {
  if (graph_) {
    return absl::FailedPreconditionError(
        absl::StrCat("stage ", state_.stage(), " runs sub-steps: NextSubSteps, not Next"));
  }
  if (lane_busy() || state_.Done()) return std::optional<Action>();
  // Behind a running action only what the planner has already decided (a fixed order).
  if (running_ > 0 && !planner_->DecidesAhead()) return std::optional<Action>();
  const std::vector<Action>& ready = ReadyView();
  if (ready.empty()) return std::optional<Action>();
  const std::optional<Action> choice = planner_->Next(ready, state_);
  if (!choice.has_value()) return choice;
  RETURN_IF_ERROR(StartChoice(*choice));
  return choice;
}

absl::Status StageLoop::EnableSubSteps(SubStepLayout layout) {
  if (state_.Running() || lane_busy_) {
    return absl::FailedPreconditionError(
        absl::StrCat("stage ", state_.stage(), ": sub-steps enabled while an action runs"));
  }
  ASSIGN_OR_RETURN(SubStepGraph graph, SubStepGraph::Create(std::move(layout)));
  graph_.emplace(std::move(graph));
  return absl::OkStatus();
}

absl::Status StageLoop::LaunchReady(std::vector<SubStepOrder>* orders) {
  for (SubStepLane lane : {SubStepLane::kCompute, SubStepLane::kCommunication}) {
    std::vector<SubStepOrder> ready = graph_->Ready(lane);
    if (order_communication_ && lane == SubStepLane::kCommunication && !ready.empty()) {
      const std::optional<Action> turn = CommunicationTurn();
      ready.erase(std::remove_if(ready.begin(), ready.end(),
                                 [&](const SubStepOrder& o) { return o.step.action != turn; }),
                  ready.end());
      if (!ready.empty()) ++communication_group_->next;
    }
    if (ready.empty()) continue;
    const int pick = planner_->PickSubStep(ready);
    if (pick < 0 || pick >= static_cast<int>(ready.size())) {
      return absl::InternalError(absl::StrCat("the planner of stage ", state_.stage(),
                                              " picked sub-step ", pick, " of ", ready.size()));
    }
    RETURN_IF_ERROR(graph_->Launched(ready[pick]));
    orders->push_back(ready[pick]);
  }
  return absl::OkStatus();
}

StageLoop::CommunicationGroup StageLoop::FormCommunicationGroup(const Action& first) {
  CommunicationGroup group{{first}, {}, 0};
  // The planner's pair, if the partner never waits for another stage (its input is made
  // here) nor, under a memory limit, for `first` to free an activation (it is no F): then the
  // turns that `first` waits for always come, and no loop through other stages forms.
  const std::optional<Action> partner = planner_->CommunicationPartner(first);
  if (partner && graph_->CommunicationCount(*partner) > 0 &&
      InputFromThisStage(state_.spec(), *partner) &&
      (state_.spec().max_inflight == 0 || partner->kind != ActionKind::kForward)) {
    group.actions.push_back(*partner);
  }
  for (const Action& a : group.actions) communication_grouped_.insert(a);
  group.turns = PairTurns(group.actions);
  return group;
}

std::vector<int> StageLoop::PairTurns(const std::vector<Action>& actions) const {
  // The group's sub-steps as the stage loop would launch them if every sub-step took one unit
  // of time and all were ready at once: each idle lane takes the sub-step the planner picks
  // (Planner::PickSubStep) among the ready ones, oldest action first. The dispatches and
  // combines come in that order: a function of the plan and the layout only.
  struct Chain {
    std::vector<SubStepOrder> orders;
    size_t next = 0;
    int ready_at = 0;
  };
  std::vector<Chain> chains;
  for (const Action& a : actions) chains.push_back({graph_->OrdersOf(a), 0, 0});
  std::vector<int> turns;
  int busy_until[2] = {0, 0};
  const auto left = [&] {
    return std::any_of(chains.begin(), chains.end(),
                       [](const Chain& c) { return c.next < c.orders.size(); });
  };
  for (int t = 0; left(); ++t) {
    for (SubStepLane lane : {SubStepLane::kCompute, SubStepLane::kCommunication}) {
      if (busy_until[static_cast<int>(lane)] > t) continue;
      std::vector<SubStepOrder> ready;
      std::vector<int> owner;
      for (size_t i = 0; i < chains.size(); ++i) {
        const Chain& c = chains[i];
        if (c.next < c.orders.size() && c.ready_at <= t && c.orders[c.next].lane() == lane) {
          ready.push_back(c.orders[c.next]);
          owner.push_back(static_cast<int>(i));
        }
      }
      if (ready.empty()) continue;
      const int pick =
          std::clamp(planner_->PickSubStep(ready), 0, static_cast<int>(ready.size()) - 1);
      Chain& c = chains[owner[pick]];
      if (lane == SubStepLane::kCommunication) turns.push_back(owner[pick]);
      ++c.next;
      c.ready_at = t + 1;
      busy_until[static_cast<int>(lane)] = t + 1;
    }
  }
  return turns;
}

std::optional<Action> StageLoop::CommunicationTurn() {
  if (communication_group_ && communication_group_->next == communication_group_->turns.size()) {
    communication_group_.reset();
  }
  if (!communication_group_) {
    // The next group starts with the first action in start order that communicates and is in
    // no group yet; until it started, no action that started after it has the turn.
    for (const Action& a : graph_->Running()) {
      if (communication_grouped_.count(a) == 0 && graph_->CommunicationCount(a) > 0) {
        communication_group_ = FormCommunicationGroup(a);
        break;
      }
    }
    if (!communication_group_) return std::nullopt;
  }
  return communication_group_->actions[communication_group_->turns[communication_group_->next]];
}

absl::StatusOr<std::vector<SubStepOrder>> StageLoop::NextSubSteps() {
  if (!graph_) {
    return absl::FailedPreconditionError(
        absl::StrCat("stage ", state_.stage(), ": NextSubSteps without EnableSubSteps"));
  }
  std::vector<SubStepOrder> orders;
  RETURN_IF_ERROR(LaunchReady(&orders));
  // The compute lane idle: a new action, alone or (MayOverlap) beside the running ones.
  while (!graph_->LaneBusy(SubStepLane::kCompute) && !state_.Done()) {
    const std::vector<Action> running = graph_->Running();
    std::vector<Action> ready = ReadyView();
    if (!running.empty()) {
      ready.erase(std::remove_if(ready.begin(), ready.end(),
                                 [&](const Action& a) {
                                   // Beside running actions, never one over the memory limit: an F
                                   // may have to wait for a running B to free an activation.
                                   return !planner_->MayOverlap(a, running) ||
                                          !state_.CheckStart(a).ok();
                                 }),
                  ready.end());
    }
    if (ready.empty()) break;
    const std::optional<Action> choice = planner_->Next(ready, state_);
    if (!choice.has_value()) break;
    RETURN_IF_ERROR(StartChoice(*choice));
    RETURN_IF_ERROR(LaunchReady(&orders));
  }
  return orders;
}

absl::StatusOr<std::optional<FinishedOutputs>> StageLoop::SubStepFinished(
    const SubStepOrder& order) {
  if (!graph_) {
    return absl::FailedPreconditionError(
        absl::StrCat("stage ", state_.stage(), ": SubStepFinished without EnableSubSteps"));
  }
  ASSIGN_OR_RETURN(const bool last, graph_->Finished(order));
  if (!last) return std::optional<FinishedOutputs>();
  ASSIGN_OR_RETURN(FinishedOutputs outputs, FinishAction(order.step.action));
  return std::optional<FinishedOutputs>(std::move(outputs));
}

absl::StatusOr<FinishedOutputs> StageLoop::Finished(const Action& action) {
  if (graph_) {
    return absl::FailedPreconditionError(
        absl::StrCat("stage ", state_.stage(), " runs sub-steps: SubStepFinished, not Finished"));
  }
  return FinishAction(action);
}

absl::StatusOr<FinishedOutputs> StageLoop::FinishAction(const Action& action) {
  FinishedOutputs outputs;
  ASSIGN_OR_RETURN(outputs.remote, state_.Finished(action));
  if (graph_) {
    lane_busy_ = !graph_->Empty();
  } else {
    --running_;
  }
  planner_->ActionFinished(action);
  if (std::optional<Transfer> local = LocalHandOff(state_.spec(), action)) {
    pending_hand_offs_.insert(HandOffKey(*local));
    outputs.local.push_back(*local);
  }
  return outputs;
}

absl::Status StageLoop::InputArrived(const Transfer& transfer) {
  return state_.InputArrived(transfer);
}

absl::Status StageLoop::HandOffArrived(const Transfer& hand_off) {
  if (pending_hand_offs_.erase(HandOffKey(hand_off)) == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "stage ", state_.stage(), ": no local hand-off pending for ", TransferToString(hand_off)));
  }
  return absl::OkStatus();
}

bool StageLoop::Blocked() const {
  return !lane_busy_ && running_ == 0 && !state_.Done() && pending_hand_offs_.empty();
}

std::string StageLoop::DescribeWaiting() const {
  std::string text = state_.DescribeWaiting();
  if (graph_ && !graph_->Empty()) absl::StrAppend(&text, "; sub-steps: ", graph_->Describe());
  if (!pending_hand_offs_.empty()) {
    absl::StrAppend(&text, "; ", pending_hand_offs_.size(), " local hand-off(s) in flight");
  }
  return text;
}

}  // namespace stagehand::runtime
