// SubStepGraph: one stage's running compute actions as chains of sub-steps (fine-grained
// callables, runtime/sub_step.h), and its two lanes: attn / experts / rest on the compute
// lane, dispatch / combine on the communication lane. A sub-step needs the one before it in
// its action and a free lane of its kind, so one action's dispatch can run while another
// action computes. Thread-free bookkeeping: not a planner (the stage loop asks the planner
// which action starts and which ready sub-step goes first) and not an executor.
#ifndef STAGEHAND_RUNTIME_SUB_STEP_GRAPH_H_
#define STAGEHAND_RUNTIME_SUB_STEP_GRAPH_H_

#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/action.h"
#include "runtime/sub_step.h"

namespace stagehand::runtime {

// The layers of one chunk: its first global layer and, per layer, whether it has an MoE MLP.
struct ChunkLayers {
  int first_layer = 0;
  std::vector<bool> is_moe;
};
// Chunk -> its layers. Actions of a chunk with an MoE layer split into sub-steps
// (SplitIntoSubSteps); every other action runs whole, as one compute sub-step.
using SubStepLayout = std::map<int, ChunkLayers>;

enum class SubStepLane { kCompute, kCommunication };
// kCommunication for dispatch and combine (IsCommunication), else kCompute.
SubStepLane LaneOf(SubStepKind kind);

// One sub-step to launch: `step` is part `index` of the `count` sub-steps of step.action.
// `whole`: the action is not split (count 1; step.layer and step.part mean nothing).
struct SubStepOrder {
  SubStep step;
  int index = 0;
  int count = 1;
  bool whole = false;

  bool last() const { return index + 1 == count; }
  SubStepLane lane() const { return whole ? SubStepLane::kCompute : LaneOf(step.part); }
  friend bool operator==(const SubStepOrder& a, const SubStepOrder& b) {
    return a.step == b.step && a.index == b.index && a.count == b.count && a.whole == b.whole;
  }
};

// "s1 F c0 mb3 L2 dispatch (3/11)", or "s1 F c0 mb3 (whole)".
std::string SubStepOrderToString(const SubStepOrder& order);
std::ostream& operator<<(std::ostream& os, const SubStepOrder& order);

class SubStepGraph {
 public:
  // InvalidArgument for a chunk with no layers or a negative first layer.
  static absl::StatusOr<SubStepGraph> Create(SubStepLayout layout);

  // `action` (a compute action) started: its sub-steps are queued behind nothing.
  // AlreadyExists if it is running; InvalidArgument for a chunk the layout lacks (unless the
  // layout is empty: everything whole) or an action that is not F, I, W or B.
  absl::Status Start(const Action& action);
  // The sub-steps that may launch on `lane` now: of each running action, its next sub-step if
  // its previous one finished and it runs on `lane`; in the actions' start order. Empty while
  // `lane` is busy.
  std::vector<SubStepOrder> Ready(SubStepLane lane) const;
  // `order`, one of Ready(order.lane()), launched: its lane is busy until it finishes.
  // FailedPrecondition otherwise.
  absl::Status Launched(const SubStepOrder& order);
  // A launched sub-step finished: frees its lane. True when it was its action's last (the
  // action is then done and no longer running). FailedPrecondition if it was not launched.
  absl::StatusOr<bool> Finished(const SubStepOrder& order);

  bool LaneBusy(SubStepLane lane) const { return busy_[static_cast<int>(lane)]; }
  // Actions with sub-steps left, in start order.
  std::vector<Action> Running() const;
  // The sub-steps `action` runs as (running or not), in order: one whole order for a chunk
  // without MoE layers; empty for a chunk the layout lacks or an action that is not F, I, W, B.
  std::vector<SubStepOrder> OrdersOf(const Action& action) const;
  // How many of them are dispatch / combine: 0 for an action run whole or a W.
  int CommunicationCount(const Action& action) const;
  bool Empty() const { return running_.empty(); }
  // "running s1 F c0 mb3 at L1 dispatch (2/11, on the communication lane)", for reports.
  std::string Describe() const;

 private:
  struct RunningAction {
    Action action;
    std::vector<SubStep> steps;  // empty: whole
    int next = 0;                // sub-steps launched
    bool in_flight = false;      // steps[next - 1] (or the whole action) is running
  };
  explicit SubStepGraph(SubStepLayout layout) : layout_(std::move(layout)) {}
  SubStepOrder OrderOf(const RunningAction& r, int index) const;
  RunningAction* Find(const Action& action);

  SubStepLayout layout_;
  std::vector<RunningAction> running_;  // start order
  bool busy_[2] = {false, false};       // by SubStepLane
};

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_SUB_STEP_GRAPH_H_
