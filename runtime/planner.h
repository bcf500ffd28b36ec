// Planner: the event-driven interface that picks a stage's next compute action, the
// definitions that build planners by name, their registry, and OrderedPlanner (a fixed
// per-stage list). Not an executor: a planner never blocks, never touches tensors, never
// sends; communication follows from the step graph (stage_state.h).
#ifndef STAGEHAND_RUNTIME_PLANNER_H_
#define STAGEHAND_RUNTIME_PLANNER_H_

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "runtime/action.h"
#include "runtime/stage_state.h"
#include "runtime/step_spec.h"
#include "runtime/sub_step_graph.h"

namespace stagehand::runtime {

// One instance per stage per step.
class Planner {
 public:
  virtual ~Planner();
  // The next compute action among `ready` (StageLoop::Ready() of this stage, sorted by
  // Action's operator<), or nullopt to wait for the next event. Called by the stage loop
  // (runtime/stage_loop.h) only while the stage's compute lane is idle, after every event that may
  // have changed `ready`: the step's start, one of the stage's actions finishing, an input
  // arriving. A planner reads what happened from `state`; it gets no separate event stream.
  virtual std::optional<Action> Next(const std::vector<Action>& ready, const StageState& state) = 0;
  // `action`, which this planner picked, finished on the lane (called by the stage loop after
  // `state` recorded it, before the next Next). For planners that time what they see; the
  // default ignores it.
  virtual void ActionFinished(const Action& action);
  // Whether the next choice is already fixed while an action runs (a fixed order), so that a
  // lane holding two actions (StageLoop::SetLaneDepth) may ask for it then and queue it. A
  // planner that reacts to what arrives (adaptive) would decide with less than it waits for:
  // the stage asks it only once the lane is idle. Default: no.
  virtual bool DecidesAhead() const { return false; }

  // Fine-grained callables (the stage loop's sub-step mode, runtime/sub_step_graph.h).
  // Whether `candidate` may start while `running` (this stage's actions with sub-steps left,
  // in start order; never empty) still run, so that their sub-steps interleave: one
  // action's dispatch / combine on the communication lane under another's compute. Next is
  // then offered only such candidates. Default: never, one action at a time.
  virtual bool MayOverlap(const Action& candidate, const std::vector<Action>& running) const;
  // Which of `ready` (sub-steps that may launch on one idle lane, in their actions' start
  // order; never empty) launches: its index. Default: 0, the oldest action's.
  virtual int PickSubStep(const std::vector<SubStepOrder>& ready) const;
  // Expert parallelism (StageLoop::OrderCommunication): the action whose dispatches and
  // combines may alternate with those of `first`, which starts before it: the plan's pair,
  // fixed by the plan alone (never by timing), so that every member of an expert-parallel
  // group meets the same all-to-all next. It must be able to start while `first` runs alone
  // (MayOverlap); the stage loop takes it only if its input is made on the stage. Default:
  // none, one action at a time.
  virtual std::optional<Action> CommunicationPartner(const Action& first) const;
};

// Time as a planner may read it, in seconds: the steady clock in the actor runtime, virtual
// time in the simulator. Only the differences between readings mean anything.
class PlannerClock {
 public:
  virtual ~PlannerClock();
  virtual double Now() const = 0;
};

// The process's steady clock; never destroyed.
const PlannerClock& SteadyPlannerClock();

// What a user asks for; a PlannerDefinition turns it into the StepSpec it plans.
struct PlannerOptions {
  int num_stages = 0;        // P >= 1
  int num_microbatches = 0;  // M >= 1
  int max_inflight = 0;      // activations per stage, 0 = unlimited
  // v for planners with several chunks per stage (interleaved, looped_bfs); 0 = the
  // planner's default. Planners with a fixed shape (1f1b, zb_v ...) ignore it.
  int chunks_per_stage = 0;
};

// OK, or InvalidArgument naming the bad field.
absl::Status ValidatePlannerOptions(const PlannerOptions& options);

class PlannerDefinition {
 public:
  virtual ~PlannerDefinition();
  virtual std::string name() const = 0;         // registry key, e.g. "1f1b"
  virtual std::string description() const = 0;  // one line for --help lists
  // The step this planner plans for `options` (chunks, placement, split or fused
  // backward); InvalidArgument if the planner cannot honour them.
  virtual absl::StatusOr<StepSpec> MakeSpec(const PlannerOptions& options) const = 0;
  // The planner of `stage` for `spec`, which came from MakeSpec.
  virtual std::unique_ptr<Planner> MakePlanner(const StepSpec& spec, int stage) const = 0;
  // Every stage's planner for one step of `spec` (P entries), for a driver that runs all
  // stages and keeps `clock` (the simulator: virtual time). The default calls MakePlanner
  // per stage; a planner that shares work between stages (a frozen plan) or reads time
  // overrides it.
  virtual std::vector<std::unique_ptr<Planner>> MakePlanners(const StepSpec& spec,
                                                             const PlannerClock& clock) const;
  // Whether this planner's stages run the actions of chunks with MoE layers as sub-steps
  // (fine-grained callables), its planners overlapping them (Planner::MayOverlap). Default:
  // no, whole actions.
  virtual bool OverlapsSubSteps() const { return false; }
};

// Whether `definition`'s stages run sub-steps for chunks of `layout`: it overlaps them (or
// `always`: --moe_sub_steps) and a chunk has an MoE layer (the actor runtime and the simulator
// both ask this).
bool RunsSubSteps(const PlannerDefinition& definition, const SubStepLayout& layout,
                  bool always = false);

// Planner definitions by name. Default() is filled at static-initialization time by
// STAGEHAND_REGISTER_PLANNER; a registry can also be built and filled by hand (tests).
class PlannerRegistry {
 public:
  PlannerRegistry() = default;
  PlannerRegistry(const PlannerRegistry&) = delete;
  PlannerRegistry& operator=(const PlannerRegistry&) = delete;

  // The process-wide registry that STAGEHAND_REGISTER_PLANNER fills; never destroyed.
  static PlannerRegistry& Default();

  // Adds `definition` under definition->name(). A second definition of the same name is
  // dropped and remembered: Get() of that name then answers FailedPrecondition. A null
  // definition or an empty name is a programming error and aborts with a message.
  void Register(std::unique_ptr<PlannerDefinition> definition);
  // The definition registered first under `name`, or nullptr.
  const PlannerDefinition* Find(absl::string_view name) const;
  std::vector<std::string> Names() const;  // sorted
  // NotFound listing the known names; FailedPrecondition if `name` was registered twice.
  absl::StatusOr<const PlannerDefinition*> Get(absl::string_view name) const;

 private:
  std::map<std::string, std::unique_ptr<PlannerDefinition>, std::less<>> definitions_;
  std::map<std::string, int, std::less<>> extra_registrations_;  // name -> count dropped
};

// Registers one definition in PlannerRegistry::Default() when constructed; used through
// STAGEHAND_REGISTER_PLANNER.
class PlannerRegistration {
 public:
  explicit PlannerRegistration(std::unique_ptr<PlannerDefinition> definition);
};

// At namespace scope in a .cc file of a cc_library with alwayslink = 1:
//   STAGEHAND_REGISTER_PLANNER(MyPlannerDefinition);
// where MyPlannerDefinition is a default-constructible PlannerDefinition.
#define STAGEHAND_REGISTER_PLANNER(ClassName) \
  STAGEHAND_REGISTER_PLANNER_WITH_ID_(ClassName, __COUNTER__)
#define STAGEHAND_REGISTER_PLANNER_WITH_ID_(ClassName, id) \
  STAGEHAND_REGISTER_PLANNER_WITH_ID2_(ClassName, id)
#define STAGEHAND_REGISTER_PLANNER_WITH_ID2_(ClassName, id)                                   \
  static const ::stagehand::runtime::PlannerRegistration stagehand_planner_registration_##id( \
      std::unique_ptr<ClassName>(new ClassName()))

// Walks a fixed list of this stage's compute actions: Next returns the first action of the
// list not yet started, iff it is in `ready`. The list is the whole plan of the stage.
class OrderedPlanner : public Planner {
 public:
  // `overlap_pairs`: MayOverlap lets an F start while one B or F runs and a B while one F
  // runs (of other microbatches): 1F1B-style F/B pairs, and the warm-up's forwards, overlap
  // at sub-step granularity. Never two B's (or I's / W's): a chunk's weight gradients add up
  // in microbatch order, bitwise as the sequential run.
  explicit OrderedPlanner(std::vector<Action> order, bool overlap_pairs = false);
  bool MayOverlap(const Action& candidate, const std::vector<Action>& running) const override;
  // With overlap pairs: a sub-step whose action communicates next goes first (it feeds the
  // communication lane), else the oldest action's.
  int PickSubStep(const std::vector<SubStepOrder>& ready) const override;
  // With overlap pairs: the action the plan starts right after `first`, if it may overlap
  // `first` alone (1F1B's F k + B j, a warm-up's two forwards).
  std::optional<Action> CommunicationPartner(const Action& first) const override;
  std::optional<Action> Next(const std::vector<Action>& ready, const StageState& state) override;
  bool DecidesAhead() const override { return true; }  // the order is fixed

  const std::vector<Action>& order() const { return order_; }

 private:
  std::vector<Action> order_;
  bool overlap_pairs_ = false;
  std::size_t next_ = 0;  // order_[0, next_) have started
};

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_PLANNER_H_
