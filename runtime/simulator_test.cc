// Tests of the simulator's mechanics with small planners defined here: timing, transfer
// lanes, stalls, bad picks, max_inflight, FormatPlan. Not tests of the built-in planners.
#include "runtime/simulator.h"

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stagehand::runtime {
namespace {

using ::testing::HasSubstr;

using NextFunction =
    std::function<std::optional<Action>(const std::vector<Action>&, const StageState&)>;

class FunctionPlanner : public Planner {
 public:
  explicit FunctionPlanner(NextFunction next) : next_(std::move(next)) {}
  std::optional<Action> Next(const std::vector<Action>& ready, const StageState& state) override {
    return next_(ready, state);
  }

 private:
  NextFunction next_;
};

// Plans `spec` (whatever the options) with `next` on every stage.
class FunctionDefinition : public PlannerDefinition {
 public:
  FunctionDefinition(std::string name, StepSpec spec, NextFunction next)
      : name_(std::move(name)), spec_(std::move(spec)), next_(std::move(next)) {}
  std::string name() const override { return name_; }
  std::string description() const override { return "test planner"; }
  absl::StatusOr<StepSpec> MakeSpec(const PlannerOptions&) const override { return spec_; }
  std::unique_ptr<Planner> MakePlanner(const StepSpec&, int) const override {
    return std::make_unique<FunctionPlanner>(next_);
  }

 private:
  std::string name_;
  StepSpec spec_;
  NextFunction next_;
};

std::optional<Action> FirstReady(const std::vector<Action>& ready, const StageState&) {
  return ready.front();
}
std::optional<Action> NeverPicks(const std::vector<Action>&, const StageState&) {
  return std::nullopt;
}
// Waits for a backward before doing anything: nothing is ever ready for it.
std::optional<Action> BackwardFirst(const std::vector<Action>& ready, const StageState&) {
  for (const Action& action : ready) {
    if (action.kind == ActionKind::kBackward) return action;
  }
  return std::nullopt;
}

StepSpec Spec(int stages, int microbatches, std::vector<int> chunk_to_stage, bool split,
              int max_inflight = 0) {
  StepSpec spec;
  spec.num_stages = stages;
  spec.num_microbatches = microbatches;
  spec.num_chunks = static_cast<int>(chunk_to_stage.size());
  spec.chunk_to_stage = std::move(chunk_to_stage);
  spec.split_backward = split;
  spec.max_inflight = max_inflight;
  return spec;
}

TEST(SimulatorTest, TimesATwoStageMicrobatch) {
  const FunctionDefinition definition("first", Spec(2, 1, {0, 1}, false), FirstReady);
  absl::StatusOr<SimResult> result = Simulate(definition, PlannerOptions{});
  ASSERT_TRUE(result.ok()) << result.status();
  // s0 F [0,1]; s1 F [1,2]; s1 B [2,4]; s0 B [4,6].
  ASSERT_EQ(result->per_stage.size(), 2u);
  ASSERT_EQ(result->per_stage[0].size(), 2u);
  EXPECT_EQ(result->per_stage[0][1].start, 4);
  EXPECT_EQ(result->per_stage[0][1].end, 6);
  EXPECT_EQ(result->per_stage[1][0].start, 1);
  EXPECT_EQ(result->step_time, 6);
  EXPECT_DOUBLE_EQ(result->bubble_fraction, 0.5);  // 2 * (6 - 3) / (2 * 6)
  EXPECT_EQ(result->peak_inflight, (std::vector<int>{1, 1}));
  EXPECT_EQ(FormatPlan(*result), "s0: F c0 mb0 | B c0 mb0\ns1: F c1 mb0 | B c1 mb0\n");
}

TEST(SimulatorTest, TransfersTakeTimeAndQueueOnTheirLane) {
  const FunctionDefinition definition("first", Spec(2, 2, {0, 1}, false), FirstReady);
  CostModel cost;
  cost.transfer = 2;
  absl::StatusOr<SimResult> result = Simulate(definition, PlannerOptions{}, cost);
  ASSERT_TRUE(result.ok()) << result.status();
  // s0 F mb0 ends at 1, its activation lands at 3; F mb1 ends at 2, but the s0 -> s1 lane
  // is busy until 3, so it lands at 5.
  ASSERT_GE(result->transfers.size(), 2u);
  EXPECT_EQ(result->transfers[0].start, 1);
  EXPECT_EQ(result->transfers[0].end, 3);
  EXPECT_EQ(result->transfers[1].start, 3);
  EXPECT_EQ(result->transfers[1].end, 5);
  EXPECT_EQ(result->per_stage[1][0].start, 3);
  // Compute never waits for a send: s0 F mb1 starts as soon as F mb0 ends.
  EXPECT_EQ(result->per_stage[0][1].start, 1);
}

TEST(SimulatorTest, StagesSharingACoreProgressAtItsShare) {
  const FunctionDefinition definition("first", Spec(2, 2, {0, 1}, false), FirstReady);
  ConstantCosts costs{CostModel()};
  SimulationOptions options;
  options.compute_lanes = 1;
  absl::StatusOr<SimResult> result =
      SimulateWithCosts(definition, Spec(2, 2, {0, 1}, false), costs, options);
  ASSERT_TRUE(result.ok()) << result.status();
  // s0 F mb0 [0, 1] alone; then s0 F mb1 and s1 F mb0 share the core: both end at 3.
  ASSERT_GE(result->per_stage[0].size(), 2u);
  EXPECT_DOUBLE_EQ(result->per_stage[0][1].start, 1);
  EXPECT_DOUBLE_EQ(result->per_stage[0][1].end, 3);
  EXPECT_DOUBLE_EQ(result->per_stage[1][0].start, 1);
  EXPECT_DOUBLE_EQ(result->per_stage[1][0].end, 3);
  // One core does all 12 units of work (2 stages x 2 microbatches x (F 1 + B 2)).
  EXPECT_DOUBLE_EQ(result->step_time, 12);
  options.compute_lanes = 2;  // as many cores as stages: as without sharing
  absl::StatusOr<SimResult> own =
      SimulateWithCosts(definition, Spec(2, 2, {0, 1}, false), costs, options);
  absl::StatusOr<SimResult> plain = Simulate(definition, PlannerOptions{});
  ASSERT_TRUE(own.ok() && plain.ok());
  EXPECT_DOUBLE_EQ(own->step_time, plain->step_time);
}

TEST(SimulatorTest, ExecutesEveryActionOnceAndRespectsDependencies) {
  // Interleaved, V-shaped, split and fused; a greedy planner; transfers with a cost.
  const std::vector<StepSpec> specs = {
      Spec(3, 5, StandardPlacement(3, 2), false), Spec(3, 5, StandardPlacement(3, 2), true),
      Spec(2, 4, VPlacement(2), true), Spec(4, 3, VPlacement(4), false)};
  CostModel cost;
  cost.transfer = 0.5;
  for (const StepSpec& spec : specs) {
    const FunctionDefinition definition("first", spec, FirstReady);
    absl::StatusOr<SimResult> result = SimulateSpec(definition, spec, cost);
    ASSERT_TRUE(result.ok()) << result.status();
    std::map<std::pair<ActionKind, std::pair<int, int>>, TimedAction> done;
    for (int s = 0; s < spec.num_stages; ++s) {
      double lane_free = 0;
      for (const TimedAction& timed : result->per_stage[s]) {
        EXPECT_GE(timed.start, lane_free) << ActionToString(timed.action);  // one lane
        lane_free = timed.end;
        const auto key = std::make_pair(
            timed.action.kind, std::make_pair(timed.action.chunk, timed.action.microbatch));
        EXPECT_EQ(done.count(key), 0u) << "twice: " << ActionToString(timed.action);
        done[key] = timed;
      }
    }
    const int per_cell = spec.split_backward ? 3 : 2;
    EXPECT_EQ(static_cast<int>(done.size()), spec.num_chunks * spec.num_microbatches * per_cell);
    const ActionKind backward =
        spec.split_backward ? ActionKind::kBackwardInput : ActionKind::kBackward;
    const auto at = [&](ActionKind kind, int c, int mb) -> const TimedAction& {
      return done[std::make_pair(kind, std::make_pair(c, mb))];
    };
    for (int c = 0; c < spec.num_chunks; ++c) {
      for (int mb = 0; mb < spec.num_microbatches; ++mb) {
        const TimedAction& f = at(ActionKind::kForward, c, mb);
        const TimedAction& b = at(backward, c, mb);
        EXPECT_GE(b.start, f.end);
        if (c > 0) {
          const TimedAction& producer = at(ActionKind::kForward, c - 1, mb);
          const bool remote = spec.chunk_to_stage[c - 1] != spec.chunk_to_stage[c];
          EXPECT_GE(f.start, producer.end + (remote ? cost.transfer : 0));
        }
        if (c + 1 < spec.num_chunks) {
          EXPECT_GE(b.start, at(backward, c + 1, mb).end);
        }
        if (spec.split_backward) {
          EXPECT_GE(at(ActionKind::kBackwardWeight, c, mb).start, b.end);
        }
      }
    }
  }
}

// Plans `spec` with fixed per-stage orders (OrderedPlanner).
class OrdersDefinition : public PlannerDefinition {
 public:
  OrdersDefinition(StepSpec spec, std::vector<std::vector<Action>> orders)
      : spec_(std::move(spec)), orders_(std::move(orders)) {}
  std::string name() const override { return "orders"; }
  std::string description() const override { return "fixed orders"; }
  absl::StatusOr<StepSpec> MakeSpec(const PlannerOptions&) const override { return spec_; }
  std::unique_ptr<Planner> MakePlanner(const StepSpec&, int stage) const override {
    return std::make_unique<OrderedPlanner>(orders_[stage]);
  }

 private:
  StepSpec spec_;
  std::vector<std::vector<Action>> orders_;
};

// A lane of depth 2 (the next action decided while one runs, started when it ends): a fixed
// order runs exactly the depth-1 timeline (deciding costs no virtual time); a greedy planner
// (not deciding ahead: asked only when the lane is idle) runs exactly its depth-1 timeline too.
TEST(SimulatorTest, ADeeperLaneRunsAFixedOrderTheSameAndAGreedyPlannerCorrectly) {
  CostModel cost;
  cost.transfer = 0.5;
  ConstantCosts costs{cost};
  for (const StepSpec& spec :
       {Spec(3, 5, StandardPlacement(3, 2), true), Spec(4, 8, StandardPlacement(4, 1), false),
        Spec(2, 4, VPlacement(2), true)}) {
    const FunctionDefinition greedy("first", spec, FirstReady);
    SimulationOptions depth1, depth2;
    depth2.lane_depth = 2;
    absl::StatusOr<SimResult> planned = SimulateWithCosts(greedy, spec, costs, depth1);
    ASSERT_TRUE(planned.ok()) << planned.status();
    std::vector<std::vector<Action>> orders(spec.num_stages);
    for (int s = 0; s < spec.num_stages; ++s) {
      for (const TimedAction& timed : planned->per_stage[s]) orders[s].push_back(timed.action);
    }
    const OrdersDefinition ordered(spec, orders);
    absl::StatusOr<SimResult> one = SimulateWithCosts(ordered, spec, costs, depth1);
    absl::StatusOr<SimResult> two = SimulateWithCosts(ordered, spec, costs, depth2);
    ASSERT_TRUE(one.ok() && two.ok());
    EXPECT_EQ(FormatPlan(*one), FormatPlan(*two));
    EXPECT_DOUBLE_EQ(one->step_time, two->step_time);
    for (int s = 0; s < spec.num_stages; ++s) {
      ASSERT_EQ(one->per_stage[s].size(), two->per_stage[s].size());
      for (size_t i = 0; i < one->per_stage[s].size(); ++i) {
        EXPECT_DOUBLE_EQ(one->per_stage[s][i].start, two->per_stage[s][i].start);
      }
    }
    absl::StatusOr<SimResult> deep = SimulateWithCosts(greedy, spec, costs, depth2);
    ASSERT_TRUE(deep.ok()) << deep.status();
    EXPECT_EQ(FormatPlan(*deep), FormatPlan(*planned));
    EXPECT_DOUBLE_EQ(deep->step_time, planned->step_time);
  }
  SimulationOptions bad;
  bad.lane_depth = 0;
  const FunctionDefinition greedy("first", Spec(2, 2, {0, 1}, false), FirstReady);
  EXPECT_FALSE(SimulateWithCosts(greedy, Spec(2, 2, {0, 1}, false), costs, bad).ok());
}

TEST(SimulatorTest, PlannerThatNeverPicksIsAStallNamingEachStage) {
  const FunctionDefinition definition("lazy", Spec(2, 3, {0, 1}, false), NeverPicks);
  absl::StatusOr<SimResult> result = Simulate(definition, PlannerOptions{});
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(result.status().message(),
            "lazy: step stalled at t=0 with 12 compute actions left; no stage can progress:\n"
            "  s0: ready, not started: F c0 mb0, F c0 mb1, F c0 mb2\n"
            "  s1: s1 F c1 mb0 waits for activation from s0 (c0 mb0); "
            "s1 F c1 mb1 waits for activation from s0 (c0 mb1); "
            "s1 F c1 mb2 waits for activation from s0 (c0 mb2)");
}

TEST(SimulatorTest, PlannerThatDemandsABackwardFirstIsAStall) {
  const FunctionDefinition definition("backward-first", Spec(3, 2, {0, 1, 2}, false),
                                      BackwardFirst);
  absl::StatusOr<SimResult> result = Simulate(definition, PlannerOptions{});
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(result.status().message(), HasSubstr("backward-first: step stalled at t=0"));
  EXPECT_THAT(result.status().message(), HasSubstr("s0: ready, not started: F c0 mb0, F c0 mb1"));
  EXPECT_THAT(result.status().message(),
              HasSubstr("s2: s2 F c2 mb0 waits for activation from s1 (c1 mb0)"));
}

TEST(SimulatorTest, StallAfterProgressReportsTheTimeAndFinishedStages) {
  // Stage 1 runs only microbatch 0; stage 0 finishes all it can.
  const FunctionDefinition definition(
      "mb0-only", Spec(2, 2, {0, 1}, false),
      [](const std::vector<Action>& ready, const StageState& state) -> std::optional<Action> {
        for (const Action& action : ready) {
          if (state.stage() == 0 || action.microbatch == 0) return action;
        }
        return std::nullopt;
      });
  absl::StatusOr<SimResult> result = Simulate(definition, PlannerOptions{});
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(result.status().message(),
              HasSubstr("step stalled at t=6 with 3 compute actions left"));
  EXPECT_THAT(result.status().message(),
              HasSubstr("s0: s0 B c0 mb1 waits for gradient from s1 (c1 mb1)"));
  EXPECT_THAT(result.status().message(), HasSubstr("s1: ready, not started: F c1 mb1"));
}

TEST(SimulatorTest, PickingAnActionThatIsNotReadyIsReported) {
  const FunctionDefinition definition(
      "eager", Spec(2, 1, {0, 1}, false),
      [](const std::vector<Action>&, const StageState& state) -> std::optional<Action> {
        return Action{state.stage(), ActionKind::kBackward, state.stage(), 0};
      });
  absl::StatusOr<SimResult> result = Simulate(definition, PlannerOptions{});
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(result.status().message(),
              HasSubstr("eager: at t=0 the planner of stage 0 picked s0 B c0 mb0: "
                        "s0 B c0 mb0 is not ready: it waits for s0 F c0 mb0"));
}

TEST(SimulatorTest, ForwardBeyondMaxInflightIsReportedNotExceeded) {
  const FunctionDefinition definition("forwards-first", Spec(2, 4, {0, 1}, false, 2), FirstReady);
  absl::StatusOr<SimResult> result = Simulate(definition, PlannerOptions{});
  EXPECT_EQ(result.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(result.status().message(),
              HasSubstr("forwards-first: at t=2 the planner of stage 0 picked s0 F c0 mb2: "
                        "s0 F c0 mb2 would make stage 0 hold 3 activations, above "
                        "max_inflight = 2"));
}

TEST(SimulatorTest, RejectsBadInputs) {
  const FunctionDefinition bad_spec("x", Spec(2, 1, {0, 0}, false), FirstReady);
  EXPECT_THAT(Simulate(bad_spec, PlannerOptions{}).status().message(),
              HasSubstr("x: StepSpec.chunk_to_stage places no chunk on stage 1"));
  const FunctionDefinition good("x", Spec(1, 1, {0}, false), FirstReady);
  CostModel cost;
  cost.backward = -1;
  EXPECT_THAT(Simulate(good, PlannerOptions{}, cost).status().message(),
              HasSubstr("CostModel.backward = -1, must be finite and >= 0"));
}

TEST(SimulatorTest, MissingPlannerIsReported) {
  class NoPlanner : public FunctionDefinition {
   public:
    NoPlanner() : FunctionDefinition("none", Spec(1, 1, {0}, false), FirstReady) {}
    std::unique_ptr<Planner> MakePlanner(const StepSpec&, int) const override { return nullptr; }
  };
  EXPECT_THAT(Simulate(NoPlanner(), PlannerOptions{}).status().message(),
              HasSubstr("none: MakePlanner returned no planner for stage 0"));
}

}  // namespace
}  // namespace stagehand::runtime
