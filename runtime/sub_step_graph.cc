// SubStepGraph: running actions as chains of sub-steps on a compute and a communication lane.
// Not a planner: which action starts, and which ready sub-step goes first, is asked elsewhere.
#include "runtime/sub_step_graph.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {

SubStepLane LaneOf(SubStepKind kind) {
  return IsCommunication(kind) ? SubStepLane::kCommunication : SubStepLane::kCompute;
}

std::string SubStepOrderToString(const SubStepOrder& order) {
  if (order.whole) return absl::StrCat(ActionToString(order.step.action), " (whole)");
  return absl::StrCat(SubStepToString(order.step), " (", order.index + 1, "/", order.count, ")");
}

std::ostream& operator<<(std::ostream& os, const SubStepOrder& order) {
  return os << SubStepOrderToString(order);
}

absl::StatusOr<SubStepGraph> SubStepGraph::Create(SubStepLayout layout) {
  for (const auto& [chunk, layers] : layout) {
    if (layers.is_moe.empty() || layers.first_layer < 0) {
      return absl::InvalidArgumentError(absl::StrCat("sub-step layout: chunk ", chunk, " has ",
                                                     layers.is_moe.size(), " layers from layer ",
                                                     layers.first_layer, " (need >= 1 from >= 0)"));
    }
  }
  return SubStepGraph(std::move(layout));
}

SubStepGraph::RunningAction* SubStepGraph::Find(const Action& action) {
  for (RunningAction& r : running_) {
    if (r.action == action) return &r;
  }
  return nullptr;
}

absl::Status SubStepGraph::Start(const Action& action) {
  if (Find(action) != nullptr) {
    return absl::AlreadyExistsError(absl::StrCat(ActionToString(action), " is already running"));
  }
  RunningAction r{action, {}, 0, false};
  const auto it = layout_.find(action.chunk);
  if (it == layout_.end() && !layout_.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(ActionToString(action), ": chunk ", action.chunk,
                                                   " is not in the sub-step layout"));
  }
  const bool any_moe =
      it != layout_.end() && std::find(it->second.is_moe.begin(), it->second.is_moe.end(), true) !=
                                 it->second.is_moe.end();
  if (any_moe) {
    ASSIGN_OR_RETURN(r.steps, SplitIntoSubSteps(action, it->second.first_layer, it->second.is_moe));
  } else if (!IsCompute(action.kind)) {
    return absl::InvalidArgumentError(
        absl::StrCat("only F, I, W and B run on a stage's lanes, not ", ActionToString(action)));
  }
  running_.push_back(std::move(r));
  return absl::OkStatus();
}

SubStepOrder SubStepGraph::OrderOf(const RunningAction& r, int index) const {
  if (r.steps.empty()) return SubStepOrder{SubStep{r.action, 0, SubStepKind::kRest}, 0, 1, true};
  return SubStepOrder{r.steps[index], index, static_cast<int>(r.steps.size()), false};
}

std::vector<SubStepOrder> SubStepGraph::Ready(SubStepLane lane) const {
  std::vector<SubStepOrder> ready;
  if (LaneBusy(lane)) return ready;
  for (const RunningAction& r : running_) {
    const int count = r.steps.empty() ? 1 : static_cast<int>(r.steps.size());
    if (r.in_flight || r.next >= count) continue;
    SubStepOrder order = OrderOf(r, r.next);
    if (order.lane() == lane) ready.push_back(std::move(order));
  }
  return ready;
}

absl::Status SubStepGraph::Launched(const SubStepOrder& order) {
  RunningAction* r = Find(order.step.action);
  const std::vector<SubStepOrder> ready = Ready(order.lane());
  if (r == nullptr || std::find(ready.begin(), ready.end(), order) == ready.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("sub-step ", SubStepOrderToString(order), " launched but not ready (",
                     r == nullptr ? "its action is not running" : Describe(), ")"));
  }
  ++r->next;
  r->in_flight = true;
  busy_[static_cast<int>(order.lane())] = true;
  return absl::OkStatus();
}

absl::StatusOr<bool> SubStepGraph::Finished(const SubStepOrder& order) {
  RunningAction* r = Find(order.step.action);
  if (r == nullptr || !r->in_flight || !(OrderOf(*r, r->next - 1) == order)) {
    return absl::FailedPreconditionError(
        absl::StrCat("sub-step ", SubStepOrderToString(order), " finished but was not running"));
  }
  r->in_flight = false;
  busy_[static_cast<int>(order.lane())] = false;
  if (!order.last()) return false;
  running_.erase(running_.begin() + (r - running_.data()));
  return true;
}

std::vector<Action> SubStepGraph::Running() const {
  std::vector<Action> actions;
  for (const RunningAction& r : running_) actions.push_back(r.action);
  return actions;
}

std::vector<SubStepOrder> SubStepGraph::OrdersOf(const Action& action) const {
  std::vector<SubStepOrder> orders;
  const auto it = layout_.find(action.chunk);
  if (it == layout_.end() || !IsCompute(action.kind)) return orders;
  const std::vector<bool>& is_moe = it->second.is_moe;
  if (std::find(is_moe.begin(), is_moe.end(), true) == is_moe.end()) {
    orders.push_back(SubStepOrder{SubStep{action, 0, SubStepKind::kRest}, 0, 1, true});
    return orders;
  }
  const absl::StatusOr<std::vector<SubStep>> steps =
      SplitIntoSubSteps(action, it->second.first_layer, is_moe);
  if (!steps.ok()) return orders;
  for (size_t i = 0; i < steps->size(); ++i) {
    orders.push_back(
        SubStepOrder{(*steps)[i], static_cast<int>(i), static_cast<int>(steps->size()), false});
  }
  return orders;
}

int SubStepGraph::CommunicationCount(const Action& action) const {
  const std::vector<SubStepOrder> orders = OrdersOf(action);
  return static_cast<int>(std::count_if(orders.begin(), orders.end(), [](const SubStepOrder& o) {
    return o.lane() == SubStepLane::kCommunication;
  }));
}

std::string SubStepGraph::Describe() const {
  std::vector<std::string> parts;
  for (const RunningAction& r : running_) {
    if (r.in_flight) {
      const SubStepOrder order = OrderOf(r, r.next - 1);
      parts.push_back(absl::StrCat(
          "running ", SubStepOrderToString(order), " on the ",
          order.lane() == SubStepLane::kCompute ? "compute" : "communication", " lane"));
    } else {
      parts.push_back(absl::StrCat("next ", SubStepOrderToString(OrderOf(r, r.next))));
    }
  }
  return parts.empty() ? "no action running" : absl::StrJoin(parts, "; ");
}

}  // namespace stagehand::runtime
