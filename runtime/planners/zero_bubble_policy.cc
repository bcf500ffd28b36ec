// ZeroBubblePolicy and its frozen unit-cost plan.
// Not a search: one greedy pass, no lookahead (the ZB paper's ILP is out of scope).
#include "runtime/planners/zero_bubble_policy.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/simulator.h"

namespace stagehand::runtime {
namespace {

// The policy on one stage, writing down each action it picks (the stage loop starts every
// pick, or the simulation fails): the stage's order, without recording a timeline.
class RecordingPolicy : public ZeroBubblePolicy {
 public:
  RecordingPolicy(int budget, std::vector<Action>* order)
      : ZeroBubblePolicy(budget), order_(order) {}
  std::optional<Action> Next(const std::vector<Action>& ready, const StageState& state) override {
    std::optional<Action> choice = ZeroBubblePolicy::Next(ready, state);
    if (choice.has_value()) order_->push_back(*choice);
    return choice;
  }

 private:
  std::vector<Action>* order_;
};

// Runs the policy on every stage of a given spec, each stage's picks into (*orders)[stage].
class PolicyDefinition : public PlannerDefinition {
 public:
  PolicyDefinition(int budget, std::vector<std::vector<Action>>* orders)
      : budget_(budget), orders_(orders) {}
  std::string name() const override { return "zero_bubble_policy"; }
  std::string description() const override { return "greedy B > F (within budget) > W"; }
  absl::StatusOr<StepSpec> MakeSpec(const PlannerOptions&) const override {
    return absl::UnimplementedError("PolicyDefinition plans a given spec");
  }
  std::unique_ptr<Planner> MakePlanner(const StepSpec&, int stage) const override {
    return std::make_unique<RecordingPolicy>(budget_, &(*orders_)[stage]);
  }

 private:
  int budget_;
  std::vector<std::vector<Action>>* orders_;
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
  if (state.committed_activations() < budget_) {
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

namespace {

using Orders = std::vector<std::vector<Action>>;

// The unit-cost simulation of the policy: the plan of (spec, budget).
absl::StatusOr<Orders> SimulateOrders(const StepSpec& spec, int budget) {
  CostModel unit;
  unit.forward = unit.backward_input = unit.backward_weight = 1;
  ConstantCosts costs(unit);
  SimulationOptions options;
  options.record_timeline = false;  // the orders are all it keeps
  Orders orders(std::max(spec.num_stages, 0));
  absl::StatusOr<SimResult> result =
      SimulateWithCosts(PolicyDefinition(budget, &orders), spec, costs, options);
  if (!result.ok()) return result.status();
  return orders;
}

bool SameSpec(const StepSpec& a, const StepSpec& b) {
  return a.num_stages == b.num_stages && a.num_microbatches == b.num_microbatches &&
         a.num_chunks == b.num_chunks && a.chunk_to_stage == b.chunk_to_stage &&
         a.split_backward == b.split_backward && a.max_inflight == b.max_inflight;
}

// The plans made last, newest first: a plan is a function of (spec, budget) alone.
class PlanCache {
 public:
  std::shared_ptr<const absl::StatusOr<Orders>> Get(const StepSpec& spec, int budget) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (const Entry& entry : entries_) {
        if (entry.budget == budget && SameSpec(entry.spec, spec)) return entry.plan;
      }
    }
    // Simulated outside the lock: two threads may both simulate a new plan (the same one).
    auto plan = std::make_shared<const absl::StatusOr<Orders>>(SimulateOrders(spec, budget));
    std::lock_guard<std::mutex> lock(mutex_);
    entries_.insert(entries_.begin(), Entry{spec, budget, plan, Actions(*plan)});
    std::int64_t kept = 0;
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      kept += entries_[i].actions;
      if (i > 0 && (i >= kEntries || kept > kMaxActions)) {  // the newest is always kept
        entries_.resize(i);
        break;
      }
    }
    return plan;
  }

 private:
  // zb_h2 and zb_v at a few shapes (auto, sweeps) without re-simulating; bounded, as one plan
  // of a 1,024-stage step holds tens of millions of actions (16 bytes each).
  static constexpr std::size_t kEntries = 4;
  static constexpr std::int64_t kMaxActions = std::int64_t{32} << 20;
  struct Entry {
    StepSpec spec;
    int budget = 0;
    std::shared_ptr<const absl::StatusOr<Orders>> plan;
    std::int64_t actions = 0;
  };
  static std::int64_t Actions(const absl::StatusOr<Orders>& plan) {
    std::int64_t actions = 0;
    if (plan.ok()) {
      for (const std::vector<Action>& order : *plan) actions += order.size();
    }
    return actions;
  }
  std::mutex mutex_;
  std::vector<Entry> entries_;
};

std::shared_ptr<const absl::StatusOr<Orders>> Plan(const StepSpec& spec, int budget) {
  static PlanCache* const cache = new PlanCache();  // never destroyed
  return cache->Get(spec, budget);
}

}  // namespace

absl::StatusOr<std::vector<std::vector<Action>>> ZeroBubbleOrders(const StepSpec& spec,
                                                                  int budget) {
  return *Plan(spec, budget);
}

absl::StatusOr<std::vector<Action>> ZeroBubbleStageOrder(const StepSpec& spec, int budget,
                                                         int stage) {
  const std::shared_ptr<const absl::StatusOr<Orders>> plan = Plan(spec, budget);
  if (!plan->ok()) return plan->status();
  if (stage < 0 || stage >= static_cast<int>((*plan)->size())) {
    return absl::OutOfRangeError(
        absl::StrCat("stage ", stage, " is not in [0, ", (*plan)->size(), ")"));
  }
  return (**plan)[stage];
}

std::vector<std::unique_ptr<Planner>> FrozenZeroBubblePlanners(const StepSpec& spec, int budget) {
  const std::shared_ptr<const absl::StatusOr<Orders>> orders = Plan(spec, budget);
  std::vector<std::unique_ptr<Planner>> planners;
  for (int s = 0; s < spec.num_stages; ++s) {
    if (orders->ok()) {
      planners.push_back(std::make_unique<OrderedPlanner>((**orders)[s]));
    } else {
      planners.push_back(std::make_unique<ZeroBubblePolicy>(budget));  // MakeSpec reported it
    }
  }
  return planners;
}

}  // namespace stagehand::runtime
