// The planner registry and OrderedPlanner.
// Not any particular schedule: those live one per file in runtime/planners/.
#include "runtime/planner.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace stagehand::runtime {

Planner::~Planner() = default;
void Planner::ActionFinished(const Action&) {}
bool Planner::MayOverlap(const Action&, const std::vector<Action>&) const { return false; }
int Planner::PickSubStep(const std::vector<SubStepOrder>&) const { return 0; }
std::optional<Action> Planner::CommunicationPartner(const Action&) const { return std::nullopt; }
PlannerClock::~PlannerClock() = default;
PlannerDefinition::~PlannerDefinition() = default;

namespace {
class SteadyClock : public PlannerClock {
 public:
  double Now() const override {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
};
}  // namespace

const PlannerClock& SteadyPlannerClock() {
  static const SteadyClock* const clock = new SteadyClock();
  return *clock;
}

std::vector<std::unique_ptr<Planner>> PlannerDefinition::MakePlanners(
    const StepSpec& spec, const PlannerClock& /*clock*/) const {
  std::vector<std::unique_ptr<Planner>> planners;
  for (int s = 0; s < spec.num_stages; ++s) planners.push_back(MakePlanner(spec, s));
  return planners;
}

absl::Status ValidatePlannerOptions(const PlannerOptions& options) {
  if (options.num_stages < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("PlannerOptions.num_stages = ", options.num_stages, ", must be >= 1"));
  }
  if (options.num_microbatches < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "PlannerOptions.num_microbatches = ", options.num_microbatches, ", must be >= 1"));
  }
  if (options.max_inflight < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "PlannerOptions.max_inflight = ", options.max_inflight, ", must be >= 0 (0 = unlimited)"));
  }
  if (options.chunks_per_stage < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("PlannerOptions.chunks_per_stage = ", options.chunks_per_stage,
                     ", must be >= 0 (0 = the planner's default)"));
  }
  return absl::OkStatus();
}

PlannerRegistry& PlannerRegistry::Default() {
  static PlannerRegistry* const registry = new PlannerRegistry();
  return *registry;
}

void PlannerRegistry::Register(std::unique_ptr<PlannerDefinition> definition) {
  if (definition == nullptr || definition->name().empty()) {
    std::fprintf(stderr, "PlannerRegistry::Register: %s\n",
                 definition == nullptr ? "null definition" : "definition with an empty name");
    std::abort();
  }
  std::string name = definition->name();
  if (definitions_.count(name) > 0) {
    ++extra_registrations_[name];
    return;
  }
  definitions_.emplace(std::move(name), std::move(definition));
}

const PlannerDefinition* PlannerRegistry::Find(absl::string_view name) const {
  const auto it = definitions_.find(name);
  return it == definitions_.end() ? nullptr : it->second.get();
}

std::vector<std::string> PlannerRegistry::Names() const {
  std::vector<std::string> names;
  for (const auto& entry : definitions_) names.push_back(entry.first);
  return names;  // std::map keeps them sorted
}

absl::StatusOr<const PlannerDefinition*> PlannerRegistry::Get(absl::string_view name) const {
  const PlannerDefinition* definition = Find(name);
  if (definition == nullptr) {
    const std::vector<std::string> names = Names();
    return absl::NotFoundError(absl::StrCat(
        "no planner named \"", name, "\"; known planners: ",
        names.empty() ? "(none: link //runtime/planners:all_planners or your planner's target)"
                      : absl::StrJoin(names, ", ")));
  }
  if (const auto it = extra_registrations_.find(name); it != extra_registrations_.end()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "planner \"", name, "\" is registered ", it->second + 1,
        " times; two linked targets define it (kept: ", definition->description(), ")"));
  }
  return definition;
}

PlannerRegistration::PlannerRegistration(std::unique_ptr<PlannerDefinition> definition) {
  PlannerRegistry::Default().Register(std::move(definition));
}

bool RunsSubSteps(const PlannerDefinition& definition, const SubStepLayout& layout, bool always) {
  if (!always && !definition.OverlapsSubSteps()) return false;
  for (const auto& [chunk, layers] : layout) {
    for (bool moe : layers.is_moe) {
      if (moe) return true;
    }
  }
  return false;
}

OrderedPlanner::OrderedPlanner(std::vector<Action> order, bool overlap_pairs)
    : order_(std::move(order)), overlap_pairs_(overlap_pairs) {}

bool OrderedPlanner::MayOverlap(const Action& candidate, const std::vector<Action>& running) const {
  if (!overlap_pairs_ || running.size() != 1) return false;
  const auto is_forward = [](const Action& a) { return a.kind == ActionKind::kForward; };
  const Action& other = running.front();
  if (other.microbatch == candidate.microbatch) return false;
  // F with B (a steady-state pair), or F with F (the warm-up's forwards, in order): never B
  // with B, whose weight gradients would then add up in another order than one at a time.
  return is_forward(candidate) || is_forward(other);
}

namespace {

// Whether the sub-step after `order` in its action is a dispatch or combine: F's attn and
// experts, I's / B's rest and experts (runtime/sub_step.h's orders).
bool FeedsCommunication(const SubStepOrder& order) {
  if (order.whole || order.last()) return false;
  const ActionKind kind = order.step.action.kind;
  if (kind == ActionKind::kBackwardWeight) return false;
  switch (order.step.part) {
    case SubStepKind::kAttention:
      return kind == ActionKind::kForward;
    case SubStepKind::kExperts:
      return true;
    case SubStepKind::kRest:
      return kind != ActionKind::kForward;
    default:
      return false;
  }
}

}  // namespace

int OrderedPlanner::PickSubStep(const std::vector<SubStepOrder>& ready) const {
  if (!overlap_pairs_) return 0;
  for (int i = 0; i < static_cast<int>(ready.size()); ++i) {
    if (FeedsCommunication(ready[i])) return i;
  }
  return 0;
}

std::optional<Action> OrderedPlanner::CommunicationPartner(const Action& first) const {
  if (!overlap_pairs_) return std::nullopt;
  const auto it = std::find(order_.begin(), order_.end(), first);
  if (it == order_.end() || it + 1 == order_.end() || !MayOverlap(*(it + 1), {first})) {
    return std::nullopt;
  }
  return *(it + 1);
}

std::optional<Action> OrderedPlanner::Next(const std::vector<Action>& ready,
                                           const StageState& state) {
  while (next_ < order_.size() && state.HasStarted(order_[next_])) ++next_;
  if (next_ == order_.size()) return std::nullopt;
  const Action& head = order_[next_];
  // `ready` is sorted (StageState::Ready).
  if (!std::binary_search(ready.begin(), ready.end(), head)) return std::nullopt;
  return head;
}

}  // namespace stagehand::runtime
