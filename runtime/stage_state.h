// StageState: one stage's bookkeeping of one step's graph (which inputs arrived, which
// compute actions are ready, running, finished; activations held), shared by the actor
// runtime and the simulator. Not a scheduler (planners choose) and not a transport: it
// names the transfers to make, never makes them.
#ifndef STAGEHAND_RUNTIME_STAGE_STATE_H_
#define STAGEHAND_RUNTIME_STAGE_STATE_H_

#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/action.h"
#include "runtime/step_spec.h"

namespace stagehand::runtime {

// An input that must cross to another stage: an activation after F, a gradient after B/B.
struct Transfer {
  ActionKind kind = ActionKind::kSendForward;  // kSendForward | kSendBackward
  int from_stage = 0;
  int to_stage = 0;
  int chunk = 0;  // the destination chunk (the one whose input this is)
  int microbatch = 0;

  friend bool operator==(const Transfer& a, const Transfer& b) {
    return a.kind == b.kind && a.from_stage == b.from_stage && a.to_stage == b.to_stage &&
           a.chunk == b.chunk && a.microbatch == b.microbatch;
  }
  friend bool operator!=(const Transfer& a, const Transfer& b) { return !(a == b); }
};

// The sender's side, e.g. "s0 SEND_F c1 mb3" (chunk = the destination chunk).
Action SendAction(const Transfer& transfer);
// The receiver's side, e.g. "s1 RECV_F c1 mb3".
Action RecvAction(const Transfer& transfer);
// "s0 SEND_F c1 mb3 -> s1".
std::string TransferToString(const Transfer& transfer);
std::ostream& operator<<(std::ostream& os, const Transfer& transfer);

// Dependencies, for each chunk c on this stage and microbatch mb:
//   F(c, mb)       needs the activation input of (c, mb); chunk 0 needs nothing.
//   B(c, mb) / B  needs F(c, mb) finished and, unless c is the last chunk, the gradient
//                  input of (c, mb).
//   W(c, mb)       needs B(c, mb) finished.
// Inputs produced by a chunk on this same stage are delivered by Finished() itself.
class StageState {
 public:
  // Preconditions: ValidateStepSpec(spec).ok() and 0 <= stage < spec.num_stages (see Create).
  StageState(const StepSpec& spec, int stage);
  // The constructor, with its preconditions checked: InvalidArgument otherwise.
  static absl::StatusOr<StageState> Create(const StepSpec& spec, int stage);

  int stage() const { return stage_; }
  const StepSpec& spec() const { return spec_; }
  const std::vector<int>& chunks() const { return chunks_; }  // held here, ascending

  // An input from another stage arrived: kind kForward = the activation for F(chunk, mb),
  // kBackwardInput = the gradient for B/B(chunk, mb). InvalidArgument for a chunk not on
  // this stage, an input this chunk never receives, or one that Finished() delivers
  // locally; AlreadyExists for a duplicate.
  absl::Status InputArrived(ActionKind kind, int chunk, int microbatch);
  // The same for a transfer addressed to this stage (InvalidArgument if to_stage differs).
  absl::Status InputArrived(const Transfer& transfer);

  // Compute actions whose dependencies are met and that have not started, sorted by
  // Action's operator< (F before B before W before B, then chunk, then microbatch).
  // Ignores max_inflight: see CheckStart. Valid until the state next changes.
  const std::vector<Action>& Ready() const { return ready_; }
  // OK iff `action` is ready and starting it keeps the activations held within
  // max_inflight; FailedPrecondition (not ready, says what it waits for),
  // ResourceExhausted (over max_inflight) or InvalidArgument (not an action of this stage).
  absl::Status CheckStart(const Action& action) const;
  // Marks `action` running; the errors of CheckStart.
  absl::Status Started(const Action& action);
  // Marks a running `action` finished, delivers inputs to chunks on this stage, and returns
  // the transfers to other stages it produces (at most one). FailedPrecondition if it was
  // not running.
  absl::StatusOr<std::vector<Transfer>> Finished(const Action& action);

  bool HasStarted(const Action& action) const;  // started or finished
  bool HasFinished(const Action& action) const;
  std::vector<Action> RunningActions() const;  // sorted

  // (chunk, microbatch) pairs whose F finished and whose W/B has not: activations held.
  int inflight() const { return inflight_; }
  // inflight() plus the forwards running: the activations held once they finish, which is what
  // a planner weighs one more F against (with a lane that queues an action behind a running
  // F, inflight() alone would undercount by it).
  int committed_activations() const { return inflight_ + forwards_running_; }
  int peak_inflight() const { return peak_inflight_; }
  bool Done() const { return num_finished_ == num_actions_; }  // all compute finished
  bool Running() const { return num_running_ > 0; }
  int num_remaining() const { return num_actions_ - num_finished_; }  // compute not finished

  // Short human text: what runs, what is ready, and for the first few blocked actions
  // what each waits for, e.g. "s2: s2 F c2 mb5 waits for activation from s1 (c1 mb5)".
  std::string DescribeWaiting() const;

 private:
  struct Cell {  // one (chunk, microbatch) on this stage
    bool has_activation = false;
    bool has_gradient = false;
    bool forward_started = false, forward_finished = false;
    bool backward_started = false, backward_finished = false;  // B, or B when fused
    bool weight_started = false, weight_finished = false;      // W, or B when fused
  };

  // InvalidArgument unless `action` is a compute action of this stage and of this step.
  absl::Status CheckBelongs(const Action& action) const;
  // CheckBelongs(action).ok(), without building a Status (the per-action hot path).
  bool Belongs(const Action& action) const;
  const Cell& cell(int chunk, int microbatch) const;
  Cell& cell(int chunk, int microbatch);
  bool IsReady(const Action& action) const;  // action must belong
  // Why a not-started action that belongs is not ready, e.g. "waits for gradient from s3
  // (c3 mb1)"; empty if it is ready.
  std::string WaitReason(const Action& action) const;
  // The first not-started compute action of a cell, if any.
  bool NextOfCell(int chunk, int microbatch, Action* next) const;
  // Brings ready_ up to date with the cell's flags (after any change to them).
  void RefreshReady(int chunk, int microbatch);
  // The same for one action of the cell: the only one whose readiness a change can move
  // (Started: itself; F finished: its I / B; I finished: its W; an input: its consumer).
  void RefreshReady(const Action& action);
  // I when the backward is split, else the fused B.
  ActionKind BackwardKind() const {
    return spec_.split_backward ? ActionKind::kBackwardInput : ActionKind::kBackward;
  }

  StepSpec spec_;
  int stage_ = 0;
  std::vector<int> chunks_;       // held here, ascending
  std::vector<int> local_index_;  // (C): index into chunks_, or -1
  std::vector<Cell> cells_;       // (chunks_.size() * M), index local_index * M + mb
  int num_actions_ = 0;           // compute actions of this stage in the step
  int num_finished_ = 0;
  int num_running_ = 0;
  int forwards_running_ = 0;
  // The ready compute actions, sorted, kept as cells change so that Ready() costs nothing.
  std::vector<Action> ready_;
  int inflight_ = 0;
  int peak_inflight_ = 0;
};

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_STAGE_STATE_H_
