// Adaptive: an event-driven greedy planner with lookahead that re-decides at every event from
// what actually happened, by critical path: a new microbatch's first F when memory allows (every
// other action of it follows), then I, then F within the memory budget, W to fill gaps; and it
// waits briefly for an input its running time estimates say is about to arrive (when that
// input's output feeds another stage) rather than block it behind a W.
// Not frozen (unlike zb_v, whose unit-cost plan is fixed) and not a search over schedules.
#ifndef STAGEHAND_RUNTIME_PLANNERS_ADAPTIVE_H_
#define STAGEHAND_RUNTIME_PLANNERS_ADAPTIVE_H_

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/planner.h"
#include "runtime/step_spec.h"

namespace stagehand::runtime {

// Running estimates a stage's planner keeps across steps, in seconds of its clock: the
// duration of each (kind, chunk) action and the gap between consecutive inputs of each
// (kind, chunk). Exponential moving averages; 0 until the first sample.
struct AdaptiveEstimates {
  std::map<std::pair<ActionKind, int>, double> duration;   // (F/I/W, chunk)
  std::map<std::pair<ActionKind, int>, double> input_gap;  // (F/I, chunk): arrival spacing
};

// The estimates of every stage, shared by the planners of consecutive steps. Thread-safe:
// in the actor runtime each stage's planner runs on its own actor.
class AdaptiveEstimateTable {
 public:
  // Stage `stage`'s estimates for steps of `spec`'s shape on the steady clock or on virtual
  // time (reset when the shape or the clock changes: seconds and cost units do not mix).
  AdaptiveEstimates Get(const StepSpec& spec, int stage, bool steady);
  void Put(const StepSpec& spec, int stage, bool steady, const AdaptiveEstimates& estimates);

 private:
  std::mutex mutex_;
  std::tuple<int, int, int, bool> shape_{0, 0, 0, false};  // (P, C, M, steady)
  std::vector<AdaptiveEstimates> stages_;
};

struct AdaptiveOptions {
  int budget = 0;            // chunk activations the stage may hold
  double ewma_weight = 0.3;  // weight of a new sample
  // Wait for a critical input expected within this fraction of the filler's estimated
  // duration, rather than start the filler (0 disables waiting).
  double lookahead = 0.5;
  // Start from, and leave behind, the table's estimates (real runs); off, a step learns
  // only within itself (simulations, which must not depend on what ran before).
  bool carry_estimates = false;
};

class AdaptivePlanner : public Planner {
 public:
  // `table` may be null (no estimates kept between steps).
  AdaptivePlanner(const StepSpec& spec, int stage, AdaptiveOptions options,
                  const PlannerClock& clock, std::shared_ptr<AdaptiveEstimateTable> table);
  ~AdaptivePlanner() override;
  std::optional<Action> Next(const std::vector<Action>& ready, const StageState& state) override;
  void ActionFinished(const Action& action) override;

 private:
  // The lowest not-started microbatch of (kind, chunk) if it is in `ready` (each chunk's
  // actions of a kind run in microbatch order, which keeps results bitwise the sequential
  // run's).
  std::optional<Action> Candidate(const std::vector<Action>& ready, ActionKind kind,
                                  int chunk) const;
  // F and I are on the critical path; W only frees memory.
  bool Critical(const Action& action) const;
  // Whether `action`'s output (an F's activation, an I's gradient) goes to another stage.
  bool FeedsAnotherStage(const Action& action) const;
  // Whether the budget lets `forward` start now (see the reservation in adaptive.cc).
  bool ForwardFits(const Action& forward, const StageState& state) const;
  void NoteArrivals(const std::vector<Action>& ready, double now);
  // 0. F of chunk 0 within budget, 1. I, 2. other F within budget, 3. W.
  std::optional<Action> Greedy(const std::vector<Action>& ready, const StageState& state) const;
  // Whether to wait for a critical input rather than start `filler` now.
  bool WorthWaiting(const Action& filler, const StageState& state, double now) const;
  bool Steady() const { return &clock_ == &SteadyPlannerClock(); }
  double Estimate(const std::map<std::pair<ActionKind, int>, double>& table, ActionKind kind,
                  int chunk) const;

  StepSpec spec_;
  int stage_;
  std::vector<int> chunks_;  // on this stage
  AdaptiveOptions options_;
  const PlannerClock& clock_;
  std::shared_ptr<AdaptiveEstimateTable> table_;
  AdaptiveEstimates estimates_;
  // What the planner tracks of each (kind, chunk here); flat, as Next reads it at every event.
  struct Track {
    int next_microbatch = 0;  // the lowest not started
    int seen_ready = 0;       // inputs seen (F, I)
    bool arrived = false;     // an input arrived: last_arrival is its time
    double last_arrival = 0;
  };
  // Of F, I (or B) and W of a chunk here; nullptr for a chunk not here.
  Track* FindTrack(ActionKind kind, int chunk);
  const Track* FindTrack(ActionKind kind, int chunk) const;
  int NextMicrobatch(ActionKind kind, int chunk) const;  // 0 for a chunk not here
  std::vector<int> local_;     // (C) chunk -> index into chunks_, -1 if not here
  std::vector<Track> tracks_;  // (3 * chunks_.size()): 3 * local index + kind (F, I, W)
  std::optional<Action> running_;
  double started_at_ = 0;
};

// Registered as "adaptive": the V placement of zb_v (2 chunks per stage, I and W split),
// budget max_inflight or 2P. On the steady clock (real runs) its estimates carry over from
// step to step; a simulated step (virtual clock) learns within the step only, so that
// simulations are reproducible whatever the process ran before.
class AdaptiveDefinition : public PlannerDefinition {
 public:
  std::string name() const override { return "adaptive"; }
  std::string description() const override;
  // VSpec; InvalidArgument if the policy cannot finish a unit-cost step within the budget.
  absl::StatusOr<StepSpec> MakeSpec(const PlannerOptions& options) const override;
  // On the steady clock (the actor runtime).
  std::unique_ptr<Planner> MakePlanner(const StepSpec& spec, int stage) const override;
  std::vector<std::unique_ptr<Planner>> MakePlanners(const StepSpec& spec,
                                                     const PlannerClock& clock) const override;

 private:
  std::shared_ptr<AdaptiveEstimateTable> table_ = std::make_shared<AdaptiveEstimateTable>();
};

// The chunk activations an adaptive stage may hold: max_inflight, or 2P when it is 0.
int AdaptiveBudget(const StepSpec& spec);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_PLANNERS_ADAPTIVE_H_
