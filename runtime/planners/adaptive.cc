// The adaptive planner: greedy with lookahead over the ready list, with running estimates.
// Not a frozen plan: two runs of it may order actions differently (results do not differ:
// each chunk's actions of a kind always run in microbatch order).
#include "runtime/planners/adaptive.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/planners/planner_spec.h"
#include "runtime/simulator.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {
namespace {

// Runs the adaptive policy on a given spec without estimates: its unit-cost check.
class UnitCheckDefinition : public PlannerDefinition {
 public:
  std::string name() const override { return "adaptive"; }
  std::string description() const override { return "adaptive, unit-cost check"; }
  absl::StatusOr<StepSpec> MakeSpec(const PlannerOptions&) const override {
    return absl::UnimplementedError("UnitCheckDefinition plans a given spec");
  }
  std::unique_ptr<Planner> MakePlanner(const StepSpec& spec, int stage) const override {
    AdaptiveOptions options;
    options.budget = AdaptiveBudget(spec);
    options.lookahead = 0;  // no estimates: the plain greedy rule, deterministic
    return std::make_unique<AdaptivePlanner>(spec, stage, options, SteadyPlannerClock(), nullptr);
  }
};

}  // namespace

int AdaptiveBudget(const StepSpec& spec) {
  return spec.max_inflight > 0 ? spec.max_inflight : 2 * spec.num_stages;
}

AdaptiveEstimates AdaptiveEstimateTable::Get(const StepSpec& spec, int stage, bool steady) {
  std::lock_guard<std::mutex> lock(mutex_);
  const std::tuple<int, int, int, bool> shape{spec.num_stages, spec.num_chunks,
                                              spec.num_microbatches, steady};
  if (shape != shape_) {
    shape_ = shape;
    stages_.assign(spec.num_stages, AdaptiveEstimates());
  }
  return stages_[stage];
}

void AdaptiveEstimateTable::Put(const StepSpec& spec, int stage, bool steady,
                                const AdaptiveEstimates& estimates) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (shape_ != std::make_tuple(spec.num_stages, spec.num_chunks, spec.num_microbatches, steady)) {
    return;
  }
  stages_[stage] = estimates;
}

AdaptivePlanner::AdaptivePlanner(const StepSpec& spec, int stage, AdaptiveOptions options,
                                 const PlannerClock& clock,
                                 std::shared_ptr<AdaptiveEstimateTable> table)
    : spec_(spec),
      stage_(stage),
      chunks_(ChunksOnStage(spec, stage)),
      options_(options),
      clock_(clock),
      table_(std::move(table)) {
  // Only real runs carry estimates from step to step: a simulated step starts afresh, so
  // that simulations (and the unit-cost plan every run validates) do not depend on what the
  // process simulated before.
  if (table_ != nullptr && options_.carry_estimates) {
    estimates_ = table_->Get(spec_, stage_, Steady());
  }
  local_.assign(std::max(spec_.num_chunks, 0), -1);
  for (int i = 0; i < static_cast<int>(chunks_.size()); ++i) local_[chunks_[i]] = i;
  tracks_.resize(3 * chunks_.size());
}

const AdaptivePlanner::Track* AdaptivePlanner::FindTrack(ActionKind kind, int chunk) const {
  if (chunk < 0 || chunk >= static_cast<int>(local_.size()) || local_[chunk] < 0) return nullptr;
  const int k = kind == ActionKind::kForward ? 0 : kind == ActionKind::kBackwardWeight ? 2 : 1;
  return &tracks_[3 * local_[chunk] + k];
}

AdaptivePlanner::Track* AdaptivePlanner::FindTrack(ActionKind kind, int chunk) {
  return const_cast<Track*>(static_cast<const AdaptivePlanner*>(this)->FindTrack(kind, chunk));
}

int AdaptivePlanner::NextMicrobatch(ActionKind kind, int chunk) const {
  const Track* track = FindTrack(kind, chunk);
  return track == nullptr ? 0 : track->next_microbatch;
}

AdaptivePlanner::~AdaptivePlanner() {
  if (table_ != nullptr && options_.carry_estimates) {
    table_->Put(spec_, stage_, Steady(), estimates_);
  }
}

std::optional<Action> AdaptivePlanner::Candidate(const std::vector<Action>& ready, ActionKind kind,
                                                 int chunk) const {
  const Action action{stage_, kind, chunk, NextMicrobatch(kind, chunk)};
  if (action.microbatch >= spec_.num_microbatches) return std::nullopt;
  if (!std::binary_search(ready.begin(), ready.end(), action)) return std::nullopt;
  return action;
}

bool AdaptivePlanner::FeedsAnotherStage(const Action& action) const {
  const int next = action.kind == ActionKind::kForward ? action.chunk + 1 : action.chunk - 1;
  if (action.kind == ActionKind::kForward && next == spec_.num_chunks) return false;  // I here
  return next >= 0 && spec_.chunk_to_stage[next] != stage_;
}

bool AdaptivePlanner::Critical(const Action& action) const {
  return action.kind != ActionKind::kBackwardWeight;
}

double AdaptivePlanner::Estimate(const std::map<std::pair<ActionKind, int>, double>& table,
                                 ActionKind kind, int chunk) const {
  const auto it = table.find({kind, chunk});
  return it == table.end() ? 0 : it->second;
}

// Inputs show up as new ready F's / I's, in microbatch order per chunk; the time between
// them, per chunk, predicts the next.
void AdaptivePlanner::NoteArrivals(const std::vector<Action>& ready, double now) {
  for (int c : chunks_) {
    for (ActionKind kind : {ActionKind::kForward, ActionKind::kBackwardInput}) {
      Track& track = *FindTrack(kind, c);
      int& seen = track.seen_ready;
      const int before = seen;
      seen = std::max(seen, track.next_microbatch);
      while (seen < spec_.num_microbatches &&
             std::binary_search(ready.begin(), ready.end(), Action{stage_, kind, c, seen})) {
        ++seen;
      }
      if (seen == before) continue;
      if (track.arrived && now > track.last_arrival) {
        double& gap = estimates_.input_gap[{kind, c}];
        const double sample = (now - track.last_arrival) / (seen - before);
        gap = gap == 0 ? sample : (1 - options_.ewma_weight) * gap + options_.ewma_weight * sample;
      }
      track.arrived = true;
      track.last_arrival = now;
    }
  }
}

bool AdaptivePlanner::ForwardFits(const Action& forward, const StageState& state) const {
  // One slot stays free for each later chunk here that holds no activation and still has
  // forwards to run: without it an earlier chunk could fill the budget while the microbatches
  // it holds wait for that later chunk's forwards on this stage (a stall the unit-cost plan
  // never meets, but jitter does).
  const auto started = [&](ActionKind kind, int chunk) { return NextMicrobatch(kind, chunk); };
  int reserved = 0;
  for (int c : chunks_) {
    if (c <= forward.chunk) continue;
    const int forwards = started(ActionKind::kForward, c);
    const int held = forwards - started(ActionKind::kBackwardWeight, c);
    if (held == 0 && forwards < spec_.num_microbatches) ++reserved;
  }
  return state.committed_activations() + 1 + reserved <= options_.budget;
}

std::optional<Action> AdaptivePlanner::Greedy(const std::vector<Action>& ready,
                                              const StageState& state) const {
  // 0. F of the step's first chunk when it fits: it admits a microbatch, and every other
  //    action of that microbatch follows it (the longest path to the step's end).
  if (std::optional<Action> admit = Candidate(ready, ActionKind::kForward, 0);
      admit && ForwardFits(*admit, state)) {
    return admit;
  }
  std::optional<Action> best;
  // 1. I: oldest microbatch, then the later chunk (further along the backward).
  for (int c : chunks_) {
    std::optional<Action> i = Candidate(ready, ActionKind::kBackwardInput, c);
    if (!i) continue;
    if (!best || std::make_tuple(i->microbatch, -i->chunk) <
                     std::make_tuple(best->microbatch, -best->chunk)) {
      best = i;
    }
  }
  if (best) return best;
  // 2. F within the budget: the later chunk (it finishes a microbatch sooner), then the oldest.
  for (auto c = chunks_.rbegin(); c != chunks_.rend() && !best; ++c) {
    std::optional<Action> f = Candidate(ready, ActionKind::kForward, *c);
    if (f && ForwardFits(*f, state)) best = f;
  }
  if (best) return best;
  // 3. W fills the gap, oldest microbatch first.
  for (int c : chunks_) {
    std::optional<Action> w = Candidate(ready, ActionKind::kBackwardWeight, c);
    if (w && (!best || w->microbatch < best->microbatch)) best = w;
  }
  return best;
}

bool AdaptivePlanner::WorthWaiting(const Action& filler, const StageState& state,
                                   double now) const {
  if (options_.lookahead <= 0 || state.committed_activations() >= options_.budget) return false;
  const double filler_time = Estimate(estimates_.duration, filler.kind, filler.chunk);
  if (filler_time <= 0) return false;
  for (int c : chunks_) {
    for (ActionKind kind : {ActionKind::kBackwardInput, ActionKind::kForward}) {
      const Track& track = *FindTrack(kind, c);
      const int mb = track.next_microbatch;
      if (mb >= spec_.num_microbatches) continue;
      const Action awaited{stage_, kind, c, mb};
      if (!Critical(awaited) || state.HasStarted(awaited)) continue;
      // Waiting pays only when the awaited action's output leaves this stage: otherwise the
      // filler, started now, only moves this stage's own work around.
      if (!FeedsAnotherStage(awaited)) continue;
      // Only an input from another stage, whose producers here have all finished, is sure to
      // come without this stage doing anything first.
      const int producer = kind == ActionKind::kForward ? c - 1 : c + 1;
      if (producer < 0 || producer >= spec_.num_chunks) continue;
      if (spec_.chunk_to_stage[producer] == stage_) continue;
      bool local_done = true;
      for (int other : chunks_) {
        const bool upstream = kind == ActionKind::kForward ? other < c : other > c;
        if (!upstream) continue;
        local_done =
            local_done && state.HasFinished(Action{stage_, ActionKind::kForward, other, mb});
        if (kind == ActionKind::kBackwardInput) {
          local_done = local_done &&
                       state.HasFinished(Action{stage_, ActionKind::kBackwardInput, other, mb});
        }
      }
      if (kind == ActionKind::kBackwardInput) {
        local_done = local_done && state.HasFinished(Action{stage_, ActionKind::kForward, c, mb});
      }
      const double gap = Estimate(estimates_.input_gap, kind, c);
      if (!local_done || !track.arrived || gap <= 0) continue;
      const double expected = track.last_arrival + gap;
      if (expected > now && expected - now < options_.lookahead * filler_time) return true;
    }
  }
  return false;
}

std::optional<Action> AdaptivePlanner::Next(const std::vector<Action>& ready,
                                            const StageState& state) {
  const double now = clock_.Now();
  NoteArrivals(ready, now);
  std::optional<Action> choice = Greedy(ready, state);
  if (!choice) return std::nullopt;
  if (!Critical(*choice) && WorthWaiting(*choice, state, now)) return std::nullopt;
  ++FindTrack(choice->kind, choice->chunk)->next_microbatch;
  running_ = choice;
  started_at_ = now;
  return choice;
}

void AdaptivePlanner::ActionFinished(const Action& action) {
  if (!running_ || *running_ != action) return;
  const double sample = clock_.Now() - started_at_;
  double& estimate = estimates_.duration[{action.kind, action.chunk}];
  estimate = estimate == 0 ? sample
                           : (1 - options_.ewma_weight) * estimate + options_.ewma_weight * sample;
  running_.reset();
}

std::string AdaptiveDefinition::description() const {
  return "adaptive: V placement, I and W split, 2P chunk activations (max_inflight if set); "
         "greedy by critical path at every event (admit F > I > F > W), waits for inputs its "
         "estimates expect";
}

absl::StatusOr<StepSpec> AdaptiveDefinition::MakeSpec(const PlannerOptions& options) const {
  ASSIGN_OR_RETURN(StepSpec spec, VSpec(options, Backward::kSplit));
  if (absl::StatusOr<SimResult> unit = SimulateSpec(UnitCheckDefinition(), spec); !unit.ok()) {
    return BudgetTooSmall(
        "adaptive", spec, 2 * spec.num_stages,
        [spec](int budget) mutable {
          spec.max_inflight = budget;
          return SimulateSpec(UnitCheckDefinition(), spec).ok();
        },
        unit.status().message());
  }
  return spec;
}

std::unique_ptr<Planner> AdaptiveDefinition::MakePlanner(const StepSpec& spec, int stage) const {
  AdaptiveOptions options;
  options.budget = AdaptiveBudget(spec);
  options.carry_estimates = true;
  return std::make_unique<AdaptivePlanner>(spec, stage, options, SteadyPlannerClock(), table_);
}

std::vector<std::unique_ptr<Planner>> AdaptiveDefinition::MakePlanners(
    const StepSpec& spec, const PlannerClock& clock) const {
  AdaptiveOptions options;
  options.budget = AdaptiveBudget(spec);
  std::vector<std::unique_ptr<Planner>> planners;
  for (int s = 0; s < spec.num_stages; ++s) {
    planners.push_back(std::make_unique<AdaptivePlanner>(spec, s, options, clock, table_));
  }
  return planners;
}

STAGEHAND_REGISTER_PLANNER(AdaptiveDefinition);

}  // namespace stagehand::runtime
