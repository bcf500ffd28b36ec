// Simulator: runs any PlannerDefinition over StageState in virtual time with a cost model,
// one compute lane per stage and one transfer lane per directed stage pair. Not a
// performance model of real hardware: costs are per action kind, constant, given.
#ifndef STAGEHAND_RUNTIME_SIMULATOR_H_
#define STAGEHAND_RUNTIME_SIMULATOR_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/action.h"
#include "runtime/planner.h"
#include "runtime/stage_state.h"
#include "runtime/step_spec.h"
#include "runtime/sub_step_graph.h"

namespace stagehand::runtime {

// Virtual-time cost of each action kind.
struct CostModel {
  double forward = 1;          // F
  double backward_input = 1;   // B
  double backward_weight = 1;  // W
  double backward = 2;         // B, fused
  double transfer = 0;         // one SEND -> RECV, on the pair's transfer lane
};

// OK, or InvalidArgument naming a negative or non-finite cost.
absl::Status ValidateCostModel(const CostModel& cost);
// The cost of one compute action of `kind` (0 for non-compute kinds).
double ComputeCost(const CostModel& cost, ActionKind kind);

// Per-action durations in virtual time: the constant CostModel above, or a richer model
// (runtime/sim/cost_model.h: per chunk, jitter, stragglers). Non-const: a model may draw.
class ActionCosts {
 public:
  virtual ~ActionCosts();
  virtual double ComputeTime(const Action& action) = 0;       // F, I, W or B
  virtual double TransferTime(const Transfer& transfer) = 0;  // on the pair's transfer lane
  // One sub-step (SimulationOptions::sub_steps) on its lane. Default: a whole action's
  // ComputeTime, a split action's ComputeTime shared evenly among its sub-steps.
  virtual double SubStepTime(const SubStepOrder& order);
};

// ActionCosts of a CostModel: every action of a kind costs the same.
class ConstantCosts : public ActionCosts {
 public:
  explicit ConstantCosts(const CostModel& cost) : cost_(cost) {}
  double ComputeTime(const Action& action) override { return ComputeCost(cost_, action.kind); }
  double TransferTime(const Transfer&) override { return cost_.transfer; }

 private:
  CostModel cost_;
};

struct SimulationOptions {
  // Keep every timed action and transfer (SimResult::per_stage, transfers). Off, only the
  // totals are kept: for steps of millions of actions whose timeline nobody reads.
  bool record_timeline = true;
  // The stages share this many cores (a CPU with fewer cores than stages): while n > lanes
  // stages compute, each progresses at lanes / n of its speed, as the OS time-slices them.
  // 0 = every stage has its own compute lane.
  int compute_lanes = 0;
  // The layers of each chunk (runtime/sub_step_graph.h). With a planner that overlaps
  // sub-steps (PlannerDefinition::OverlapsSubSteps) and a chunk with an MoE layer, every stage
  // runs its actions as sub-steps on two lanes, compute and communication (dispatch /
  // combine), through the stage loop's sub-step mode, as the actor runtime does; else whole.
  // Not with compute_lanes (InvalidArgument).
  SubStepLayout sub_steps;
  // Sub-steps under expert parallelism: every stage's communication lane serves its running
  // actions in the plan's pair order (StageLoop::OrderCommunication), as the runtime with ep > 1.
  bool ordered_communication = false;
  // Whole actions a stage's lane holds (StageLoop::SetLaneDepth), as the runtime's
  // --lane_depth: at 2 a stage queues the next action its planner has already decided
  // (Planner::DecidesAhead) while one runs, and it starts when that one ends. Deciding costs
  // no virtual time and only a fixed order is decided ahead, so every depth simulates the
  // same timeline: what the runtime runs at its default of 2 is what depth 1 simulates
  // (simulator_test checks it). Sub-step mode ignores it.
  int lane_depth = 1;
};

struct TimedAction {
  Action action;
  double start = 0;
  double end = 0;
};

struct TimedTransfer {
  Transfer transfer;
  double start = 0;  // when its lane took it (>= the producing action's end)
  double end = 0;    // when it arrived
};

struct TimedSubStep {
  SubStepOrder order;
  double start = 0;
  double end = 0;
};

struct SimResult {
  std::vector<std::vector<TimedAction>> per_stage;  // (P, executed order)
  double step_time = 0;                             // end of the last action
  std::vector<int> peak_inflight;                   // (P)
  double bubble_fraction = 0;            // idle stage-time / (P * step_time); 0 if step_time is 0
  std::vector<TimedTransfer> transfers;  // in the order their producing actions finished
  std::vector<double> stage_busy;        // (P) compute time of each stage
  std::int64_t num_actions = 0;          // compute actions run
  std::int64_t num_transfers = 0;        // transfers between stages made
  // (P, launch order) with sub-steps and a timeline: every sub-step, on its lane; per_stage
  // then spans each action's first sub-step's start to its last one's end.
  std::vector<std::vector<TimedSubStep>> sub_steps;
};

// Event-driven: a stage's planner is consulted whenever its compute lane is idle and it saw
// an event (step start, one of its actions or sub-steps finished, an input arrived) since it
// was last consulted. Errors, each prefixed with the planner's name:
//   FailedPrecondition  the step stalled (no stage can progress, work remains); names,
//                       per stage, what it waits for (StageState::DescribeWaiting), or a
//                       planner picked an action that is not ready;
//   ResourceExhausted   a planner picked an F beyond max_inflight (nothing is exceeded);
//   InvalidArgument     a bad spec, options or cost model, or a planner picked an action
//                       that is not a compute action of its stage.
absl::StatusOr<SimResult> Simulate(const PlannerDefinition& definition,
                                   const PlannerOptions& options,
                                   const CostModel& cost = CostModel());
// The same for a given spec (the definition's MakeSpec is not called).
absl::StatusOr<SimResult> SimulateSpec(const PlannerDefinition& definition, const StepSpec& spec,
                                       const CostModel& cost = CostModel());

// The same under per-action `costs`. Planners come from definition.MakePlanners with the
// simulator's virtual clock (seconds = cost units); the errors above, and InvalidArgument
// naming the action when `costs` returns a negative or non-finite duration.
absl::StatusOr<SimResult> SimulateWithCosts(const PlannerDefinition& definition,
                                            const StepSpec& spec, ActionCosts& costs,
                                            const SimulationOptions& options = {});

// One line per stage, actions in executed order:
//   "s0: F c0 mb0 | F c0 mb1 | ... | B c0 mb7\n"
std::string FormatPlan(const SimResult& result);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_SIMULATOR_H_
