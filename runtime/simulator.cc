// Simulator: discrete-event execution of planners over the step graph in virtual time.
// Not the actor runtime: no threads, no tensors; it only orders and times actions.
#include "runtime/simulator.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <deque>
#include <functional>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <tuple>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/stage_loop.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {
namespace {

struct Event {
  enum class Kind { kComputeFinished, kTransferArrived, kSubStepFinished };
  double time = 0;
  Kind kind = Kind::kComputeFinished;
  int stage = 0;          // the stage that computed; kTransferArrived: the destination
  std::size_t index = 0;  // kTransferArrived: the transfer's slot; kSubStepFinished: the lane
};

// Events in (time, push order): one bucket per distinct time, its events in push order, and
// a min-heap of the distinct times. Per-kind costs (unit costs, the GPT model without
// jitter) put many events at one time: a push then appends to a bucket instead of sifting a
// heap of every event in flight.
class EventQueue {
 public:
  bool empty() const { return times_.empty(); }
  double EarliestTime() const { return times_.front(); }
  void Push(const Event& event) { buckets_[BucketOf(event.time)].push_back(event); }
  // Moves the events at EarliestTime() into `batch`, in push order (events pushed at that
  // time afterwards come out in the next call, as they were pushed later).
  void PopEarliest(std::vector<Event>* batch) {
    const double time = times_.front();
    std::pop_heap(times_.begin(), times_.end(), std::greater<double>());
    times_.pop_back();
    const auto it = bucket_of_.find(time);
    batch->clear();
    batch->swap(buckets_[it->second]);  // the bucket keeps batch's old buffer, empty
    free_.push_back(it->second);
    bucket_of_.erase(it);
    for (Recent& recent : recent_) {
      if (recent.time == time) recent = Recent();
    }
  }

 private:
  // The bucket of `time`, made (with the time on the heap) if there is none.
  std::size_t BucketOf(double time) {
    // Pushes alternate between a few times (now, now + a cost): those skip the hash map.
    for (const Recent& recent : recent_) {
      if (recent.time == time) return recent.bucket;
    }
    const auto [it, added] = bucket_of_.try_emplace(time, 0);
    if (added) {
      if (free_.empty()) {
        it->second = buckets_.size();
        buckets_.emplace_back();
      } else {
        it->second = free_.back();
        free_.pop_back();
      }
      times_.push_back(time);
      std::push_heap(times_.begin(), times_.end(), std::greater<double>());
    }
    std::copy_backward(std::begin(recent_), std::end(recent_) - 1, std::end(recent_));
    recent_[0] = Recent{time, it->second};
    return it->second;
  }

  struct Recent {  // a time with a bucket, most recently looked up first; -1: none
    double time = -1;
    std::size_t bucket = 0;
  };
  Recent recent_[3];
  std::vector<double> times_;                           // min-heap of distinct times
  absl::flat_hash_map<double, std::size_t> bucket_of_;  // time -> index into buckets_
  std::vector<std::vector<Event>> buckets_;             // reused as times come and go
  std::vector<std::size_t> free_;                       // buckets_ not in bucket_of_
};

absl::Status WithPrefix(const absl::Status& status, absl::string_view prefix) {
  return absl::Status(status.code(), absl::StrCat(prefix, status.message()));
}

}  // namespace

absl::Status ValidateCostModel(const CostModel& cost) {
  const std::pair<const char*, double> fields[] = {
      {"forward", cost.forward},
      {"backward_input", cost.backward_input},
      {"backward_weight", cost.backward_weight},
      {"backward", cost.backward},
      {"transfer", cost.transfer},
  };
  for (const auto& [name, value] : fields) {
    if (!std::isfinite(value) || value < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("CostModel.", name, " = ", value, ", must be finite and >= 0"));
    }
  }
  return absl::OkStatus();
}

ActionCosts::~ActionCosts() = default;

double ActionCosts::SubStepTime(const SubStepOrder& order) {
  const double whole = ComputeTime(order.step.action);
  return order.whole ? whole : whole / order.count;
}

double ComputeCost(const CostModel& cost, ActionKind kind) {
  switch (kind) {
    case ActionKind::kForward:
      return cost.forward;
    case ActionKind::kBackwardInput:
      return cost.backward_input;
    case ActionKind::kBackwardWeight:
      return cost.backward_weight;
    case ActionKind::kBackward:
      return cost.backward;
    default:
      return 0;
  }
}

absl::StatusOr<SimResult> Simulate(const PlannerDefinition& definition,
                                   const PlannerOptions& options, const CostModel& cost) {
  absl::StatusOr<StepSpec> spec = definition.MakeSpec(options);
  if (!spec.ok()) return WithPrefix(spec.status(), absl::StrCat(definition.name(), ": "));
  return SimulateSpec(definition, *spec, cost);
}

absl::StatusOr<SimResult> SimulateSpec(const PlannerDefinition& definition, const StepSpec& spec,
                                       const CostModel& cost) {
  if (absl::Status status = ValidateCostModel(cost); !status.ok()) return status;
  ConstantCosts costs(cost);
  return SimulateWithCosts(definition, spec, costs);
}

namespace {

class VirtualClock : public PlannerClock {
 public:
  double Now() const override { return now; }
  double now = 0;
};

// One simulation: the stage loops, the event queue and what is recorded, as phases.
class Simulation {
 public:
  Simulation(const std::string& name, const StepSpec& spec, ActionCosts& costs,
             const SimulationOptions& options)
      : name_(name), spec_(spec), costs_(costs), options_(options) {}

  absl::Status Create(const PlannerDefinition& definition);
  absl::StatusOr<SimResult> Run();

 private:
  absl::Status ConsultIdleStages();
  absl::Status Consult(int stage);  // one stage's planner, while its lane has room
  // Starts `action` on stage s's lane now (its duration, timeline entry and finish event).
  absl::Status Start(int s, const Action& action);
  // Sub-step mode: the stage loop launches what may run on the stage's idle lanes.
  absl::Status ConsultSubSteps(int stage);
  absl::Status EnableSubSteps();
  absl::Status Stalled() const;
  absl::Status ApplyEventsAtNow();
  absl::Status ApplyFinished(const Event& event);
  absl::Status ApplySubStepFinished(const Event& event);
  // A finished action's outputs: hand-offs land now, transfers take their lanes.
  absl::Status Deliver(int stage, const FinishedOutputs& outputs);
  bool SharedCores() const { return options_.compute_lanes > 0; }
  // Shared cores: the speed of each computing stage now, and when the next action finishes.
  double Speed() const;
  double NextSharedFinish() const;
  // Shared cores: advances every computing stage's work to `time` (>= now) and applies the
  // actions that finish then.
  absl::Status AdvanceSharedTo(double time);
  // `duration` if finite and >= 0, else InvalidArgument naming what gave it (what() is
  // only called then: it builds text).
  template <typename What>
  absl::StatusOr<double> Checked(double duration, What what) const {
    if (std::isfinite(duration) && duration >= 0) return duration;
    return absl::InvalidArgumentError(absl::StrCat(name_, ": the cost model gave ", what(), " ",
                                                   duration, ", must be finite and >= 0"));
  }
  double& LaneFreeAt(int from, int to) {
    std::vector<std::pair<int, double>>& lanes = link_free_at_[from];
    for (auto& [stage, free_at] : lanes) {
      if (stage == to) return free_at;
    }
    return lanes.emplace_back(to, 0).second;
  }
  void MarkForConsult(int stage) { consult_[stage / 64] |= std::uint64_t{1} << (stage % 64); }

  const std::string& name_;
  const StepSpec& spec_;
  ActionCosts& costs_;
  SimulationOptions options_;
  VirtualClock clock_;
  std::vector<StageLoop> loops_;
  std::vector<Action> running_;             // (P) the action on each busy lane
  std::vector<bool> executing_;             // (P) whether running_[s] is on the lane now
  std::vector<std::deque<Action>> queued_;  // (P) decided, waiting for the lane (lane_depth)
  std::vector<std::uint64_t> consult_;      // bit s % 64 of word s / 64: s saw an event since
                                            // it was last consulted
  // Shared cores (options_.compute_lanes > 0): compute work left on each busy stage, in
  // seconds at full speed (-1 idle), and where its timeline entry is.
  std::vector<double> work_left_;
  std::vector<std::size_t> timeline_index_;
  int computing_ = 0;
  // (P) per sending stage: (to_stage, when that pair's lane is free); a stage sends to few.
  std::vector<std::vector<std::pair<int, double>>> link_free_at_;
  std::vector<Transfer> in_flight_;      // transfers, by event index
  std::vector<std::size_t> free_slots_;  // reusable in_flight_ entries
  // Sub-step mode: per stage and lane (2 s + lane) the sub-step running and where it is in
  // result_.sub_steps[s]; per stage, where each running action is in result_.per_stage[s].
  bool sub_step_mode_ = false;
  std::vector<SubStepOrder> on_lane_;
  std::vector<std::size_t> on_lane_record_;
  std::vector<std::vector<std::pair<Action, std::size_t>>> action_record_;
  EventQueue events_;
  std::vector<Event> batch_;  // ApplyEventsAtNow: the events at now being applied
  SimResult result_;
};

absl::Status Simulation::Create(const PlannerDefinition& definition) {
  const int num_stages = spec_.num_stages;  // P
  std::vector<std::unique_ptr<Planner>> planners = definition.MakePlanners(spec_, clock_);
  if (static_cast<int>(planners.size()) != num_stages) {
    return absl::InvalidArgumentError(absl::StrCat(name_, ": MakePlanners returned ",
                                                   planners.size(), " planners for ", num_stages,
                                                   " stages"));
  }
  for (int s = 0; s < num_stages; ++s) {
    absl::StatusOr<StageLoop> loop = StageLoop::Create(spec_, s, std::move(planners[s]));
    if (!loop.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(name_, ": MakePlanner returned no planner for stage ", s));
    }
    if (absl::Status depth = loop->SetLaneDepth(options_.lane_depth); !depth.ok()) {
      return WithPrefix(depth, absl::StrCat(name_, ": "));
    }
    loops_.push_back(*std::move(loop));
  }
  if (RunsSubSteps(definition, options_.sub_steps)) RETURN_IF_ERROR(EnableSubSteps());
  running_.resize(num_stages);
  executing_.assign(num_stages, false);
  queued_.resize(num_stages);
  work_left_.assign(num_stages, -1);
  timeline_index_.assign(num_stages, 0);
  link_free_at_.resize(num_stages);
  consult_.assign((num_stages + 63) / 64, 0);
  for (int s = 0; s < num_stages; ++s) MarkForConsult(s);
  result_.stage_busy.assign(num_stages, 0);
  if (options_.record_timeline) {
    result_.per_stage.resize(num_stages);
    for (int s = 0; s < num_stages; ++s) {
      result_.per_stage[s].reserve(loops_[s].state().num_remaining());
    }
  }
  return absl::OkStatus();
}

absl::Status Simulation::EnableSubSteps() {
  if (SharedCores()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name_,
                     ": sub-steps (MoE layers, a planner that overlaps them) cannot be "
                     "simulated on shared cores (compute_lanes)"));
  }
  const int num_stages = spec_.num_stages;
  for (int s = 0; s < num_stages; ++s) {
    if (absl::Status status = loops_[s].EnableSubSteps(options_.sub_steps); !status.ok()) {
      return WithPrefix(status, absl::StrCat(name_, ": "));
    }
    if (options_.ordered_communication) loops_[s].OrderCommunication();
  }
  sub_step_mode_ = true;
  on_lane_.resize(2 * num_stages);
  on_lane_record_.assign(2 * num_stages, 0);
  action_record_.resize(num_stages);
  if (options_.record_timeline) result_.sub_steps.resize(num_stages);
  return absl::OkStatus();
}

// 1. Every idle stage that saw an event asks its planner for the next action, in stage order
//    (in sub-step mode, every stage that saw one: a lane may be idle).
absl::Status Simulation::ConsultIdleStages() {
  for (std::size_t word = 0; word < consult_.size(); ++word) {
    for (std::uint64_t bits = std::exchange(consult_[word], 0); bits != 0; bits &= bits - 1) {
      const int s = static_cast<int>(word * 64) + __builtin_ctzll(bits);
      if (sub_step_mode_) {
        RETURN_IF_ERROR(ConsultSubSteps(s));
      } else if (!loops_[s].lane_busy()) {  // else its Finished will mark it again
        RETURN_IF_ERROR(Consult(s));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status Simulation::ConsultSubSteps(int s) {
  const double now = clock_.now;
  absl::StatusOr<std::vector<SubStepOrder>> orders = loops_[s].NextSubSteps();
  if (!orders.ok()) return WithPrefix(orders.status(), absl::StrCat(name_, ": at t=", now, " "));
  for (const SubStepOrder& order : *orders) {
    ASSIGN_OR_RETURN(const double duration, Checked(costs_.SubStepTime(order), [&] {
                       return absl::StrCat(SubStepOrderToString(order), " a duration of");
                     }));
    const std::size_t lane = static_cast<std::size_t>(order.lane());
    if (order.index == 0) {
      ++result_.num_actions;
      if (options_.record_timeline) {
        action_record_[s].emplace_back(order.step.action, result_.per_stage[s].size());
        result_.per_stage[s].push_back(TimedAction{order.step.action, now, now});
      }
    }
    if (order.lane() == SubStepLane::kCompute) result_.stage_busy[s] += duration;
    on_lane_[2 * s + lane] = order;
    if (options_.record_timeline) {
      on_lane_record_[2 * s + lane] = result_.sub_steps[s].size();
      result_.sub_steps[s].push_back(TimedSubStep{order, now, now + duration});
    }
    events_.Push(Event{now + duration, Event::Kind::kSubStepFinished, s, lane});
  }
  return absl::OkStatus();
}

absl::Status Simulation::Consult(int s) {
  const double now = clock_.now;
  while (!loops_[s].lane_busy()) {
    absl::StatusOr<std::optional<Action>> choice = loops_[s].Next();
    if (!choice.ok()) return WithPrefix(choice.status(), absl::StrCat(name_, ": at t=", now, " "));
    if (!choice->has_value()) return absl::OkStatus();
    if (executing_[s]) {
      queued_[s].push_back(**choice);  // starts when the lane frees (ApplyFinished)
    } else {
      RETURN_IF_ERROR(Start(s, **choice));
    }
  }
  return absl::OkStatus();
}

absl::Status Simulation::Start(int s, const Action& action) {
  const double now = clock_.now;
  executing_[s] = true;
  ASSIGN_OR_RETURN(const double duration, Checked(costs_.ComputeTime(action), [&] {
                     return absl::StrCat(ActionToString(action), " a duration of");
                   }));
  const double end = now + duration;
  running_[s] = action;
  result_.stage_busy[s] += duration;
  ++result_.num_actions;
  std::size_t index = 0;
  if (options_.record_timeline) {
    result_.per_stage[s].push_back(TimedAction{action, now, end});
    index = result_.per_stage[s].size() - 1;
  }
  if (SharedCores()) {
    work_left_[s] = duration;
    timeline_index_[s] = index;
    ++computing_;
  } else {
    events_.Push(Event{end, Event::Kind::kComputeFinished, s, index});
  }
  return absl::OkStatus();
}

double Simulation::Speed() const {
  return computing_ > options_.compute_lanes
             ? static_cast<double>(options_.compute_lanes) / computing_
             : 1.0;
}

double Simulation::NextSharedFinish() const {
  double least = std::numeric_limits<double>::infinity();
  for (double left : work_left_) {
    if (left >= 0) least = std::min(least, left);
  }
  return clock_.now + least / Speed();
}

absl::Status Simulation::AdvanceSharedTo(double time) {
  const double done = (time - clock_.now) * Speed();
  clock_.now = time;
  std::vector<int> finished;
  for (int s = 0; s < static_cast<int>(work_left_.size()); ++s) {
    if (work_left_[s] < 0) continue;
    work_left_[s] -= done;
    // Within rounding of the finish time it was advanced to.
    if (work_left_[s] <= 1e-12 * std::max(1.0, std::abs(time))) finished.push_back(s);
  }
  for (int s : finished) {
    work_left_[s] = -1;
    --computing_;
    if (options_.record_timeline) result_.per_stage[s][timeline_index_[s]].end = time;
    RETURN_IF_ERROR(ApplyFinished(Event{time, Event::Kind::kComputeFinished, s, 0}));
  }
  return absl::OkStatus();
}

// 2. Nothing in flight and work remains: what each stage waits for.
absl::Status Simulation::Stalled() const {
  int remaining = 0;
  std::vector<std::string> lines;
  for (const StageLoop& loop : loops_) {
    remaining += loop.state().num_remaining();
    lines.push_back(loop.DescribeWaiting());
  }
  return absl::FailedPreconditionError(absl::StrCat(
      name_, ": step stalled at t=", clock_.now, " with ", remaining,
      " compute actions left; no stage can progress:\n  ", absl::StrJoin(lines, "\n  ")));
}

absl::Status Simulation::ApplyFinished(const Event& event) {
  const int s = event.stage;
  const Action action = running_[s];
  executing_[s] = false;
  absl::StatusOr<FinishedOutputs> outputs = loops_[s].Finished(action);
  if (!outputs.ok()) {
    return absl::InternalError(absl::StrCat(name_, ": ", outputs.status().message()));
  }
  if (!queued_[s].empty()) {  // the action decided while this one ran takes the lane now
    const Action next = queued_[s].front();
    queued_[s].pop_front();
    RETURN_IF_ERROR(Start(s, next));
  }
  MarkForConsult(s);
  return Deliver(s, *outputs);
}

absl::Status Simulation::ApplySubStepFinished(const Event& event) {
  const int s = event.stage;
  const SubStepOrder order = on_lane_[2 * s + event.index];
  absl::StatusOr<std::optional<FinishedOutputs>> outputs = loops_[s].SubStepFinished(order);
  if (!outputs.ok()) {
    return absl::InternalError(absl::StrCat(name_, ": ", outputs.status().message()));
  }
  MarkForConsult(s);
  if (!outputs->has_value()) return absl::OkStatus();
  std::vector<std::pair<Action, std::size_t>>& running = action_record_[s];
  for (auto it = running.begin(); it != running.end(); ++it) {
    if (it->first != order.step.action) continue;
    result_.per_stage[s][it->second].end = clock_.now;
    running.erase(it);
    break;
  }
  return Deliver(s, **outputs);
}

absl::Status Simulation::Deliver(int s, const FinishedOutputs& outputs) {
  const double now = clock_.now;
  // A hand-off to a chunk on the same stage costs nothing in virtual time: it lands now.
  for (const Transfer& hand_off : outputs.local) {
    if (absl::Status status = loops_[s].HandOffArrived(hand_off); !status.ok()) {
      return absl::InternalError(absl::StrCat(name_, ": ", status.message()));
    }
  }
  for (const Transfer& transfer : outputs.remote) {
    ASSIGN_OR_RETURN(const double duration, Checked(costs_.TransferTime(transfer), [&] {
                       return absl::StrCat(TransferToString(transfer), " a transfer time of");
                     }));
    double& lane_free = LaneFreeAt(transfer.from_stage, transfer.to_stage);
    const double start = std::max(now, lane_free);
    lane_free = start + duration;
    ++result_.num_transfers;
    if (options_.record_timeline)
      result_.transfers.push_back(TimedTransfer{transfer, start, lane_free});
    std::size_t slot = in_flight_.size();
    if (free_slots_.empty()) {
      in_flight_.push_back(transfer);
    } else {
      slot = free_slots_.back();
      free_slots_.pop_back();
      in_flight_[slot] = transfer;
    }
    events_.Push(Event{lane_free, Event::Kind::kTransferArrived, transfer.to_stage, slot});
  }
  return absl::OkStatus();
}

// 3. Apply every event at the earliest time, including zero-cost transfers they produce.
absl::Status Simulation::ApplyEventsAtNow() {
  clock_.now = events_.EarliestTime();
  while (!events_.empty() && events_.EarliestTime() == clock_.now) {
    events_.PopEarliest(&batch_);
    for (const Event& event : batch_) {
      if (event.kind == Event::Kind::kComputeFinished) {
        RETURN_IF_ERROR(ApplyFinished(event));
        continue;
      }
      if (event.kind == Event::Kind::kSubStepFinished) {
        RETURN_IF_ERROR(ApplySubStepFinished(event));
        continue;
      }
      const Transfer transfer = in_flight_[event.index];
      free_slots_.push_back(event.index);
      if (absl::Status status = loops_[transfer.to_stage].InputArrived(transfer); !status.ok()) {
        return absl::InternalError(absl::StrCat(name_, ": ", status.message()));
      }
      MarkForConsult(transfer.to_stage);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<SimResult> Simulation::Run() {
  while (true) {
    RETURN_IF_ERROR(ConsultIdleStages());
    if (SharedCores() && computing_ > 0) {
      const double finish = NextSharedFinish();
      if (events_.empty() || finish <= events_.EarliestTime()) {
        RETURN_IF_ERROR(AdvanceSharedTo(finish));
        continue;
      }
      RETURN_IF_ERROR(AdvanceSharedTo(events_.EarliestTime()));
    }
    if (events_.empty()) {
      const bool all_done = std::all_of(loops_.begin(), loops_.end(),
                                        [](const StageLoop& loop) { return loop.Done(); });
      if (all_done) break;
      return Stalled();
    }
    RETURN_IF_ERROR(ApplyEventsAtNow());
  }
  result_.step_time = clock_.now;
  double idle = 0;
  for (std::size_t s = 0; s < loops_.size(); ++s) {
    idle += result_.step_time - result_.stage_busy[s];
    result_.peak_inflight.push_back(loops_[s].state().peak_inflight());
  }
  result_.bubble_fraction =
      result_.step_time > 0 ? idle / (spec_.num_stages * result_.step_time) : 0;
  return std::move(result_);
}

}  // namespace

absl::StatusOr<SimResult> SimulateWithCosts(const PlannerDefinition& definition,
                                            const StepSpec& spec, ActionCosts& costs,
                                            const SimulationOptions& options) {
  const std::string name = definition.name();
  if (absl::Status status = ValidateStepSpec(spec); !status.ok()) {
    return WithPrefix(status, absl::StrCat(name, ": "));
  }
  Simulation simulation(name, spec, costs, options);
  RETURN_IF_ERROR(simulation.Create(definition));
  return simulation.Run();
}

std::string FormatPlan(const SimResult& result) {
  std::string text;
  for (std::size_t s = 0; s < result.per_stage.size(); ++s) {
    std::vector<std::string> actions;
    for (const TimedAction& timed : result.per_stage[s]) {
      actions.push_back(ActionToStringWithoutStage(timed.action));
    }
    absl::StrAppend(&text, "s", s, ":", actions.empty() ? "" : " ", absl::StrJoin(actions, " | "),
                    "\n");
  }
  return text;
}

}  // namespace stagehand::runtime
