// ZeroBubblePolicy and its frozen unit-cost plan.
// Not a search: one greedy pass, no lookahead (the ZB paper's ILP is out of scope).
#include "runtime/planners/zero_bubble_policy.h"

#include <algorithm>
#include <memory>
#include <string>
#include <tuple>
#include <utility>

#include "runtime/simulator.h"

namespace stagehand::runtime {
namespace {

// Runs the policy on every stage of a given spec: the simulator's view of it.
class PolicyDefinition : public PlannerDefinition {
 public:
  explicit PolicyDefinition(int budget) : budget_(budget) {}
  std::string name() const override { return "zero_bubble_policy"; }
  std::string description() const override { return "greedy B > F (within budget) > W"; }
  absl::StatusOr<StepSpec> MakeSpec(const PlannerOptions&) const override {
    return absl::UnimplementedError("PolicyDefinition plans a given spec");
  }
  std::unique_ptr<Planner> MakePlanner(const StepSpec&, int) const override {
    return std::make_unique<ZeroBubblePolicy>(budget_);
  }

 private:
  int budget_;
};

}  // namespace

std::optional<Action> ZeroBubblePolicy::Next(const std::vector<Action>& ready,
                                             const StageState& state) {
  // `ready` is sorted by (kind, chunk, microbatch): the oldest ready action of a (kind, chunk)
  // is the first at or after (kind, chunk, 0), found by binary search rather than a scan.
  const auto oldest = [&](ActionKind kind, int chunk) -> const Action* {
    const Action first{state.stage(), kind, chunk, 0};
    const auto it = std::lower_bound(ready.begin(), ready.end(), first);
    if (it == ready.end() || it->kind != kind || it->chunk != chunk) return nullptr;
    return &*it;
  };
  const Action* best = nullptr;
  const auto prefer = [&](const Action* candidate, auto key) {
    if (candidate != nullptr && (best == nullptr || key(*candidate) < key(*best))) {
      best = candidate;
    }
  };
  const std::vector<int>& chunks = state.chunks();
  // 1. B: oldest microbatch, then later chunk.
  for (int c : chunks) {
    prefer(oldest(ActionKind::kBackwardInput, c),
           [](const Action& a) { return std::make_tuple(a.microbatch, -a.chunk); });
  }
  if (best != nullptr) return *best;
  // 2. F within the budget: later chunk, then oldest microbatch.
  if (state.inflight() < budget_) {
    for (int c : chunks) {
      prefer(oldest(ActionKind::kForward, c),
             [](const Action& a) { return std::make_tuple(-a.chunk, a.microbatch); });
    }
    if (best != nullptr) return *best;
  }
  // 3. W: oldest microbatch, then earlier chunk.
  for (int c : chunks) {
    prefer(oldest(ActionKind::kBackwardWeight, c),
           [](const Action& a) { return std::make_tuple(a.microbatch, a.chunk); });
  }
  if (best != nullptr) return *best;
  return std::nullopt;
}

absl::StatusOr<std::vector<std::vector<Action>>> ZeroBubbleOrders(const StepSpec& spec,
                                                                  int budget) {
  CostModel unit;
  unit.forward = unit.backward_input = unit.backward_weight = 1;
  absl::StatusOr<SimResult> result = SimulateSpec(PolicyDefinition(budget), spec, unit);
  if (!result.ok()) return result.status();
  std::vector<std::vector<Action>> orders(result->per_stage.size());
  for (std::size_t s = 0; s < result->per_stage.size(); ++s) {
    for (const TimedAction& timed : result->per_stage[s]) orders[s].push_back(timed.action);
  }
  return orders;
}

std::vector<std::unique_ptr<Planner>> FrozenZeroBubblePlanners(const StepSpec& spec, int budget) {
  absl::StatusOr<std::vector<std::vector<Action>>> orders = ZeroBubbleOrders(spec, budget);
  std::vector<std::unique_ptr<Planner>> planners;
  for (int s = 0; s < spec.num_stages; ++s) {
    if (orders.ok()) {
      planners.push_back(std::make_unique<OrderedPlanner>((*orders)[s]));
    } else {
      planners.push_back(std::make_unique<ZeroBubblePolicy>(budget));  // MakeSpec reported it
    }
  }
  return planners;
}

}  // namespace stagehand::runtime
