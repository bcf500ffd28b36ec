// StageLoop: one stage's decision loop for one step, the single place where a planner is
// consulted: the ready list it sees, the local hand-offs between chunks on the stage, the
// lane's busy flag and memory accounting. The actor runtime and the simulator both drive
// it. Not an executor: it never runs compute, never moves tensors and never waits.
#ifndef STAGEHAND_RUNTIME_STAGE_LOOP_H_
#define STAGEHAND_RUNTIME_STAGE_LOOP_H_

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/action.h"
#include "runtime/planner.h"
#include "runtime/stage_state.h"
#include "runtime/step_spec.h"
#include "runtime/sub_step_graph.h"

namespace stagehand::runtime {

// The output that `finished` hands to a neighbour chunk on the same stage (from_stage ==
// to_stage == finished.stage), if any: the activation after F when chunk + 1 lives here,
// the gradient after I / B when chunk - 1 lives here.
std::optional<Transfer> LocalHandOff(const StepSpec& spec, const Action& finished);

// What a finished compute action produces.
struct FinishedOutputs {
  std::vector<Transfer> remote;  // to other stages: the executor moves them
  // To chunks on this stage: the executor moves the payload, then calls HandOffArrived.
  std::vector<Transfer> local;
};

class StageLoop {
 public:
  // InvalidArgument for a bad spec or stage, or a null planner.
  static absl::StatusOr<StageLoop> Create(const StepSpec& spec, int stage,
                                          std::unique_ptr<Planner> planner);

  // How many whole actions the lane may hold at once: 1 (the default) runs one at a time; 2
  // lets the executor queue the next action it can already decide (Planner::DecidesAhead: a
  // fixed order; a reactive planner is asked only when the lane is idle) behind the running
  // one, so
  // that deciding and dispatching it hides under the running one's compute (a GPU stream that
  // never waits for the host; a CPU lane's queue). Actions whose input the running one makes
  // are not ready until it finishes, so any depth runs the same graph. Sub-step mode ignores
  // it. InvalidArgument outside [1, 8]; FailedPrecondition while an action runs.
  absl::Status SetLaneDepth(int depth);
  int lane_depth() const { return lane_depth_; }
  // Whole actions started and not finished (at most lane_depth()).
  int running() const { return running_; }

  // If the lane has room and work remains, asks the planner for the next action among
  // Ready() and marks it started (the lane holds it until Finished). nullopt: nothing to
  // start now, wait for the next event. An error if the planner picked an action that may
  // not start (not ready: FailedPrecondition; over max_inflight: ResourceExhausted; not of
  // this stage: InvalidArgument), with the action named.
  absl::StatusOr<std::optional<Action>> Next();
  // The running action finished on the lane: frees the lane and returns what it produces.
  absl::StatusOr<FinishedOutputs> Finished(const Action& action);

  // Fine-grained callables. From the call on, this step's compute actions run as sub-steps
  // (runtime/sub_step_graph.h: actions of chunks with MoE layers split, others whole) on two
  // lanes, and the executor drives NextSubSteps / SubStepFinished instead of Next / Finished.
  // InvalidArgument for a bad layout; FailedPrecondition while an action runs.
  absl::Status EnableSubSteps(SubStepLayout layout);
  bool sub_steps() const { return graph_.has_value(); }
  // Expert parallelism: every member of an expert-parallel group must run its stage's
  // all-to-alls (dispatch and combine sub-steps) in the same order, whatever the timing. From
  // the call on, the communication lane serves them in an order fixed by the plan: groups in
  // the actions' start order (the planner's, the same on every member), a group being an
  // action and its Planner::CommunicationPartner (the pair) when the partner's input is made
  // on this stage (an F of the first chunk or after a chunk held here, an I / B of the loss
  // chunk or before a chunk held here) and, under max_inflight, it is no F; else the action
  // alone. Within a pair, the dispatches and combines go in the order a layout of the pair's
  // sub-steps with unit times gives (PairTurns): roughly alternating, each while the other
  // action computes. The lane waits for the sub-step whose turn it is, so one microbatch's
  // dispatch still runs while the other's experts compute, and a pair never waits on other
  // stages for its partner (which would chain the stages' pairs one after another).
  void OrderCommunication() { order_communication_ = true; }
  // The sub-steps to launch now, each on its lane: for each idle lane the ready sub-step the
  // planner picks (Planner::PickSubStep); while the compute lane stays idle, a new action
  // from the planner (with others still running only if Planner::MayOverlap allows it) and
  // its first sub-step. Empty: wait for the next event. The errors of Next.
  absl::StatusOr<std::vector<SubStepOrder>> NextSubSteps();
  // A launched sub-step finished; when it was its action's last, what the action produces
  // (as Finished), else nullopt.
  absl::StatusOr<std::optional<FinishedOutputs>> SubStepFinished(const SubStepOrder& order);
  // An input from another stage arrived (to_stage must be this stage).
  absl::Status InputArrived(const Transfer& transfer);
  // A local hand-off returned by Finished landed at its consumer: its action may run now.
  absl::Status HandOffArrived(const Transfer& hand_off);

  // Compute actions the planner may choose now: StageState::Ready() less those whose input
  // is a local hand-off still on its way.
  std::vector<Action> Ready() const;
  // The same without a copy when no hand-off is pending; valid until the state changes.
  const std::vector<Action>& ReadyView();
  // The lane can take no further action now: it holds lane_depth() actions, or (sub-step
  // mode) an action runs.
  bool lane_busy() const { return graph_ ? lane_busy_ : running_ >= lane_depth_; }
  bool Done() const { return state_.Done(); }
  // Idle lane, work left, nothing it may start and no local hand-off pending: only an input
  // from another stage can unblock it.
  bool Blocked() const;
  const StageState& state() const { return state_; }
  // StageState::DescribeWaiting plus pending local hand-offs.
  std::string DescribeWaiting() const;

 private:
  StageLoop(StageState state, std::unique_ptr<Planner> planner);
  // Starts the planner's choice (state and, in sub-step mode, the graph), or says why not.
  absl::Status StartChoice(const Action& choice);
  // Records a finished action: state, planner, local hand-off.
  absl::StatusOr<FinishedOutputs> FinishAction(const Action& action);
  // Sub-step mode: launches what is ready on each idle lane into `orders`.
  absl::Status LaunchReady(std::vector<SubStepOrder>* orders);
  // OrderCommunication: the action whose dispatch / combine is next; none while no running
  // action has its turn yet (the next group's first action has not started).
  std::optional<Action> CommunicationTurn();

  // OrderCommunication's current group: its actions (start order) and, for each of their
  // dispatch / combine sub-steps in turn, which of them communicates.
  struct CommunicationGroup {
    std::vector<Action> actions;
    std::vector<int> turns;
    std::size_t next = 0;
  };
  // The group that `first` (running, in no group yet) starts: alone or with its pair.
  CommunicationGroup FormCommunicationGroup(const Action& first);
  // The order of the group's dispatches and combines (the index of the action of each) when
  // its sub-steps are laid out with unit times on the two lanes, by the planner's pick.
  std::vector<int> PairTurns(const std::vector<Action>& actions) const;

  StageState state_;
  std::unique_ptr<Planner> planner_;
  bool lane_busy_ = false;  // sub-step mode: an action is running
  int running_ = 0;         // whole actions on the lane
  int lane_depth_ = 1;
  // Local hand-offs returned by Finished and not yet landed: (kind, chunk, microbatch).
  std::set<std::tuple<ActionKind, int, int>> pending_hand_offs_;
  std::vector<Action> filtered_ready_;  // ReadyView's result while hand-offs are pending
  std::optional<SubStepGraph> graph_;   // sub-step mode; lane_busy_: an action is running
  bool order_communication_ = false;    // OrderCommunication
  std::optional<CommunicationGroup> communication_group_;
  std::set<Action> communication_grouped_;  // actions of this and earlier groups
};

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_STAGE_LOOP_H_
