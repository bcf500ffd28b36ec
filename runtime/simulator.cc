// Simulator: discrete-event execution of planners over the step graph in virtual time.
// Not the actor runtime: no threads, no tensors; it only orders and times actions.
#include "runtime/simulator.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/stage_loop.h"

namespace stagehand::runtime {
namespace {

struct Event {
  enum class Kind { kComputeFinished, kTransferArrived };
  double time = 0;
  std::int64_t sequence = 0;  // ties at equal time: first scheduled, first processed
  Kind kind = Kind::kComputeFinished;
  int stage = 0;  // kComputeFinished: the stage
  std::size_t index = 0;  // into per_stage[stage] or transfers
};

struct LaterFirst {
  bool operator()(const Event& a, const Event& b) const {
    return std::tie(a.time, a.sequence) > std::tie(b.time, b.sequence);
  }
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
  const std::string name = definition.name();
  if (absl::Status status = ValidateStepSpec(spec); !status.ok()) {
    return WithPrefix(status, absl::StrCat(name, ": "));
  }
  if (absl::Status status = ValidateCostModel(cost); !status.ok()) return status;

  const int num_stages = spec.num_stages;  // P
  std::vector<StageLoop> loops;
  for (int s = 0; s < num_stages; ++s) {
    absl::StatusOr<StageLoop> loop = StageLoop::Create(spec, s, definition.MakePlanner(spec, s));
    if (!loop.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": MakePlanner returned no planner for stage ", s));
    }
    loops.push_back(*std::move(loop));
  }

  SimResult result;
  result.per_stage.resize(num_stages);
  std::vector<bool> consult(num_stages, true);   // saw an event since last consulted
  std::map<std::pair<int, int>, double> link_free_at;  // (from, to) -> transfer lane free
  std::priority_queue<Event, std::vector<Event>, LaterFirst> events;
  std::int64_t sequence = 0;
  double now = 0;

  while (true) {
    // 1. Every idle stage that saw an event asks its planner for the next action.
    for (int s = 0; s < num_stages; ++s) {
      if (loops[s].lane_busy() || !consult[s]) continue;
      consult[s] = false;
      absl::StatusOr<std::optional<Action>> choice = loops[s].Next();
      if (!choice.ok()) return WithPrefix(choice.status(), absl::StrCat(name, ": at t=", now, " "));
      if (!choice->has_value()) continue;
      const Action action = **choice;
      const double end = now + ComputeCost(cost, action.kind);
      result.per_stage[s].push_back(TimedAction{action, now, end});
      events.push(Event{end, sequence++, Event::Kind::kComputeFinished, s,
                        result.per_stage[s].size() - 1});
    }

    // 2. Nothing in flight: done, or stalled.
    if (events.empty()) {
      const bool all_done = std::all_of(loops.begin(), loops.end(),
                                        [](const StageLoop& loop) { return loop.Done(); });
      if (all_done) break;
      int remaining = 0;
      std::vector<std::string> lines;
      for (const StageLoop& loop : loops) {
        remaining += loop.state().num_remaining();
        lines.push_back(loop.DescribeWaiting());
      }
      return absl::FailedPreconditionError(absl::StrCat(
          name, ": step stalled at t=", now, " with ", remaining,
          " compute actions left; no stage can progress:\n  ", absl::StrJoin(lines, "\n  ")));
    }

    // 3. Advance to the next event time and apply every event at that time, including
    //    zero-cost transfers those events produce.
    now = events.top().time;
    while (!events.empty() && events.top().time == now) {
      const Event event = events.top();
      events.pop();
      if (event.kind == Event::Kind::kTransferArrived) {
        const Transfer& transfer = result.transfers[event.index].transfer;
        const int to = transfer.to_stage;
        if (absl::Status status = loops[to].InputArrived(transfer); !status.ok()) {
          return absl::InternalError(absl::StrCat(name, ": ", status.message()));
        }
        consult[to] = true;
        continue;
      }
      const int s = event.stage;
      const Action action = result.per_stage[s][event.index].action;
      absl::StatusOr<FinishedOutputs> outputs = loops[s].Finished(action);
      if (!outputs.ok()) {
        return absl::InternalError(absl::StrCat(name, ": ", outputs.status().message()));
      }
      consult[s] = true;
      // A hand-off to a chunk on the same stage costs nothing in virtual time: it lands now.
      for (const Transfer& hand_off : outputs->local) {
        if (absl::Status status = loops[s].HandOffArrived(hand_off); !status.ok()) {
          return absl::InternalError(absl::StrCat(name, ": ", status.message()));
        }
      }
      for (const Transfer& transfer : outputs->remote) {
        double& lane_free = link_free_at[{transfer.from_stage, transfer.to_stage}];
        const double start = std::max(now, lane_free);
        lane_free = start + cost.transfer;
        result.transfers.push_back(TimedTransfer{transfer, start, lane_free});
        events.push(Event{lane_free, sequence++, Event::Kind::kTransferArrived, transfer.to_stage,
                          result.transfers.size() - 1});
      }
    }
  }

  result.step_time = now;
  double idle = 0;
  for (int s = 0; s < num_stages; ++s) {
    double busy_time = 0;
    for (const TimedAction& timed : result.per_stage[s]) busy_time += timed.end - timed.start;
    idle += result.step_time - busy_time;
    result.peak_inflight.push_back(loops[s].state().peak_inflight());
  }
  result.bubble_fraction = result.step_time > 0 ? idle / (num_stages * result.step_time) : 0;
  return result;
}

std::string FormatPlan(const SimResult& result) {
  std::string text;
  for (std::size_t s = 0; s < result.per_stage.size(); ++s) {
    std::vector<std::string> actions;
    for (const TimedAction& timed : result.per_stage[s]) {
      actions.push_back(ActionToStringWithoutStage(timed.action));
    }
    absl::StrAppend(&text, "s", s, ":", actions.empty() ? "" : " ",
                    absl::StrJoin(actions, " | "), "\n");
  }
  return text;
}

}  // namespace stagehand::runtime
