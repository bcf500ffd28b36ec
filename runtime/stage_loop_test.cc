// Tests of StageLoop: the ready list a planner sees, local hand-offs, the busy lane and
// planner errors. Not tests of planners (runtime/planners/) or of StageState's graph rules.
#include "runtime/stage_loop.h"

#include <algorithm>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::runtime {
namespace {

using ::stagehand::testing::IsOk;
using ::stagehand::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Two stages, four chunks in a V: stage 0 holds c0 and c3, stage 1 holds c1 and c2.
StepSpec VSpec(int microbatches = 1) {
  StepSpec spec;
  spec.num_stages = 2;
  spec.num_microbatches = microbatches;
  spec.num_chunks = 4;
  spec.chunk_to_stage = VPlacement(2);  // {0, 1, 1, 0}
  return spec;
}

// Picks the first ready action, and records every ready list it was shown.
class FirstReady : public Planner {
 public:
  explicit FirstReady(std::vector<std::vector<Action>>* seen) : seen_(seen) {}
  std::optional<Action> Next(const std::vector<Action>& ready, const StageState&) override {
    seen_->push_back(ready);
    return ready.front();
  }

 private:
  std::vector<std::vector<Action>>* seen_;
};

// FirstReady whose choice counts as decided ahead (as a fixed order's is).
class FirstReadyAhead : public FirstReady {
 public:
  using FirstReady::FirstReady;
  bool DecidesAhead() const override { return true; }
};

// Always picks the same action, ready or not.
class Stubborn : public Planner {
 public:
  explicit Stubborn(Action action) : action_(action) {}
  std::optional<Action> Next(const std::vector<Action>&, const StageState&) override {
    return action_;
  }

 private:
  Action action_;
};

std::string Text(const std::vector<Transfer>& transfers) {
  std::string text;
  for (const Transfer& t : transfers) text += TransferToString(t) + ";";
  return text;
}

TEST(LocalHandOffTest, ForwardFeedsTheNextChunkOnlyWhenItIsOnTheSameStage) {
  const std::optional<Transfer> local =
      LocalHandOff(VSpec(), Action{1, ActionKind::kForward, 1, 0});
  ASSERT_TRUE(local.has_value());
  EXPECT_EQ(TransferToString(*local), "s1 SEND_F c2 mb0 -> s1");
  EXPECT_FALSE(LocalHandOff(VSpec(), Action{0, ActionKind::kForward, 0, 0}).has_value());
  EXPECT_FALSE(LocalHandOff(VSpec(), Action{0, ActionKind::kForward, 3, 0}).has_value());
}

TEST(LocalHandOffTest, BackwardFeedsThePreviousChunkAndWeightGradFeedsNothing) {
  const std::optional<Transfer> local =
      LocalHandOff(VSpec(), Action{1, ActionKind::kBackward, 2, 0});
  ASSERT_TRUE(local.has_value());
  EXPECT_EQ(TransferToString(*local), "s1 SEND_B c1 mb0 -> s1");
  EXPECT_TRUE(LocalHandOff(VSpec(), Action{1, ActionKind::kBackwardInput, 2, 0}).has_value());
  EXPECT_FALSE(LocalHandOff(VSpec(), Action{1, ActionKind::kBackwardWeight, 2, 0}).has_value());
}

TEST(StageLoopTest, CreateRefusesANullPlannerAndABadStage) {
  EXPECT_THAT(StageLoop::Create(VSpec(), 0, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no planner")));
  std::vector<std::vector<Action>> seen;
  EXPECT_THAT(StageLoop::Create(VSpec(), 2, std::make_unique<FirstReady>(&seen)),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(StageLoopTest, ALocalHandOffHoldsItsConsumerBackUntilItLands) {
  std::vector<std::vector<Action>> seen;
  absl::StatusOr<StageLoop> loop =
      StageLoop::Create(VSpec(), 1, std::make_unique<FirstReady>(&seen));
  ASSERT_THAT(loop, IsOk());
  ASSERT_THAT(loop->InputArrived(Transfer{ActionKind::kSendForward, 0, 1, 1, 0}), IsOk());
  absl::StatusOr<std::optional<Action>> first = loop->Next();
  ASSERT_THAT(first, IsOk());
  EXPECT_EQ(ActionToString(**first), "s1 F c1 mb0");
  EXPECT_TRUE(loop->lane_busy());
  absl::StatusOr<FinishedOutputs> outputs = loop->Finished(**first);
  ASSERT_THAT(outputs, IsOk());
  EXPECT_THAT(outputs->remote, IsEmpty());
  EXPECT_EQ(Text(outputs->local), "s1 SEND_F c2 mb0 -> s1;");
  // StageState counts c2's input as there, but the payload has not landed: not ready yet.
  EXPECT_THAT(loop->Ready(), IsEmpty());
  EXPECT_FALSE(loop->Blocked());  // a hand-off is pending, so this stage is not stalled
  EXPECT_THAT(loop->Next(), IsOk());
  ASSERT_THAT(loop->HandOffArrived(outputs->local[0]), IsOk());
  EXPECT_EQ(ActionToString(loop->Ready().at(0)), "s1 F c2 mb0");
  absl::StatusOr<std::optional<Action>> second = loop->Next();
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ(ActionToString(**second), "s1 F c2 mb0");
  // The last chunk's F sends to c3 on stage 0: remote, not local.
  outputs = loop->Finished(**second);
  ASSERT_THAT(outputs, IsOk());
  EXPECT_EQ(Text(outputs->remote), "s1 SEND_F c3 mb0 -> s0;");
  EXPECT_THAT(outputs->local, IsEmpty());
  EXPECT_TRUE(loop->Blocked());
}

TEST(StageLoopTest, NoPlannerCallWhileTheLaneIsBusyOrNothingIsReady) {
  std::vector<std::vector<Action>> seen;
  absl::StatusOr<StageLoop> loop =
      StageLoop::Create(VSpec(2), 0, std::make_unique<FirstReady>(&seen));
  ASSERT_THAT(loop, IsOk());
  absl::StatusOr<std::optional<Action>> first = loop->Next();
  ASSERT_THAT(first, IsOk());
  EXPECT_EQ(ActionToString(**first), "s0 F c0 mb0");
  absl::StatusOr<std::optional<Action>> busy = loop->Next();  // lane busy
  ASSERT_THAT(busy, IsOk());
  EXPECT_FALSE(busy->has_value());
  ASSERT_THAT(loop->Finished(**first), IsOk());
  ASSERT_THAT(loop->Next(), IsOk());  // F c0 mb1
  ASSERT_THAT(loop->Finished(Action{0, ActionKind::kForward, 0, 1}), IsOk());
  absl::StatusOr<std::optional<Action>> idle = loop->Next();  // everything waits on inputs
  ASSERT_THAT(idle, IsOk());
  EXPECT_FALSE(idle->has_value());
  EXPECT_EQ(seen.size(), 2u);  // asked twice, never with an empty list
}

// Depth 2: the next ready action starts while one runs, never one whose input the running one
// makes, and never a third; the loop is not blocked while an action runs.
TEST(StageLoopTest, ADeeperLaneQueuesTheNextReadyActionBehindTheRunningOne) {
  std::vector<std::vector<Action>> seen;
  absl::StatusOr<StageLoop> loop =
      StageLoop::Create(VSpec(3), 0, std::make_unique<FirstReadyAhead>(&seen));
  ASSERT_THAT(loop, IsOk());
  ASSERT_THAT(loop->SetLaneDepth(2), IsOk());
  EXPECT_EQ(loop->lane_depth(), 2);
  absl::StatusOr<std::optional<Action>> first = loop->Next();
  ASSERT_THAT(first, IsOk());
  EXPECT_EQ(ActionToString(**first), "s0 F c0 mb0");
  EXPECT_FALSE(loop->lane_busy());  // room for one more
  absl::StatusOr<std::optional<Action>> second = loop->Next();
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ(ActionToString(**second), "s0 F c0 mb1");
  EXPECT_EQ(loop->running(), 2);
  EXPECT_TRUE(loop->lane_busy());
  absl::StatusOr<std::optional<Action>> third = loop->Next();  // full
  ASSERT_THAT(third, IsOk());
  EXPECT_FALSE(third->has_value());
  EXPECT_FALSE(loop->Blocked());
  ASSERT_THAT(loop->Finished(**first), IsOk());
  EXPECT_EQ(loop->running(), 1);
  third = loop->Next();
  ASSERT_THAT(third, IsOk());
  EXPECT_EQ(ActionToString(**third), "s0 F c0 mb2");
  ASSERT_THAT(loop->Finished(**second), IsOk());
  ASSERT_THAT(loop->Finished(**third), IsOk());
  // Everything left waits for stage 1: blocked only now that nothing runs.
  absl::StatusOr<std::optional<Action>> none = loop->Next();
  ASSERT_THAT(none, IsOk());
  EXPECT_FALSE(none->has_value());
  EXPECT_TRUE(loop->Blocked());
}

// A planner that reacts to what arrives (Planner::DecidesAhead false) is not asked while an
// action runs, whatever the depth: it would decide with less than it waits for.
TEST(StageLoopTest, AReactivePlannerIsAskedOnlyOnceTheLaneIsIdle) {
  std::vector<std::vector<Action>> seen;
  absl::StatusOr<StageLoop> loop =
      StageLoop::Create(VSpec(3), 0, std::make_unique<FirstReady>(&seen));
  ASSERT_THAT(loop, IsOk());
  ASSERT_THAT(loop->SetLaneDepth(2), IsOk());
  absl::StatusOr<std::optional<Action>> first = loop->Next();
  ASSERT_THAT(first, IsOk());
  ASSERT_TRUE(first->has_value());
  absl::StatusOr<std::optional<Action>> second = loop->Next();
  ASSERT_THAT(second, IsOk());
  EXPECT_FALSE(second->has_value());
  EXPECT_FALSE(loop->lane_busy());  // room, but nothing decided ahead
  EXPECT_EQ(seen.size(), 1u);       // not asked while F c0 mb0 runs
  ASSERT_THAT(loop->Finished(**first), IsOk());
  second = loop->Next();
  ASSERT_THAT(second, IsOk());
  EXPECT_TRUE(second->has_value());
}

TEST(StageLoopTest, LaneDepthIsCheckedAndFixedBeforeTheFirstAction) {
  std::vector<std::vector<Action>> seen;
  absl::StatusOr<StageLoop> loop =
      StageLoop::Create(VSpec(2), 0, std::make_unique<FirstReady>(&seen));
  ASSERT_THAT(loop, IsOk());
  EXPECT_THAT(loop->SetLaneDepth(0), StatusIs(absl::StatusCode::kInvalidArgument,
                                              HasSubstr("lane depth 0 is not in [1, 8]")));
  EXPECT_THAT(loop->SetLaneDepth(9), StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_THAT(loop->Next(), IsOk());
  EXPECT_THAT(loop->SetLaneDepth(2), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST(StageLoopTest, APlannerPickingAnActionThatIsNotReadyIsNamed) {
  const Action early{0, ActionKind::kBackward, 0, 0};
  absl::StatusOr<StageLoop> loop = StageLoop::Create(VSpec(), 0, std::make_unique<Stubborn>(early));
  ASSERT_THAT(loop, IsOk());
  EXPECT_THAT(loop->Next(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                     HasSubstr("the planner of stage 0 picked s0 B c0 mb0")));
}

TEST(StageLoopTest, AHandOffThatWasNeverSentIsAnError) {
  std::vector<std::vector<Action>> seen;
  absl::StatusOr<StageLoop> loop =
      StageLoop::Create(VSpec(), 1, std::make_unique<FirstReady>(&seen));
  ASSERT_THAT(loop, IsOk());
  EXPECT_THAT(loop->HandOffArrived(Transfer{ActionKind::kSendForward, 1, 1, 2, 0}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no local hand-off")));
}

// One stage holding the whole model (chunk 0: a dense layer, then an MoE layer), M = 2,
// fused backward.
StepSpec OneStageSpec() {
  StepSpec spec;
  spec.num_stages = 1;
  spec.num_microbatches = 2;
  spec.num_chunks = 1;
  spec.chunk_to_stage = {0};
  return spec;
}

// Drives a stage loop in sub-step mode to the end: the oldest launched sub-step finishes
// first. Returns the launches in order; `overlapped` tells whether sub-steps of two actions
// were ever in flight together.
std::vector<std::string> RunSubSteps(StageLoop& loop, bool* overlapped) {
  std::vector<std::string> launches;
  std::vector<SubStepOrder> in_flight;
  *overlapped = false;
  for (int guard = 0; guard < 1000 && !loop.Done(); ++guard) {
    absl::StatusOr<std::vector<SubStepOrder>> next = loop.NextSubSteps();
    EXPECT_THAT(next, IsOk());
    if (!next.ok()) break;
    for (const SubStepOrder& order : *next) {
      launches.push_back(SubStepOrderToString(order));
      in_flight.push_back(order);
    }
    for (size_t i = 1; i < in_flight.size(); ++i) {
      if (in_flight[i].step.action != in_flight[0].step.action) *overlapped = true;
    }
    if (in_flight.empty()) break;
    EXPECT_THAT(loop.SubStepFinished(in_flight.front()), IsOk());
    in_flight.erase(in_flight.begin());
  }
  return launches;
}

std::vector<Action> FFBB() {
  return {{0, ActionKind::kForward, 0, 0},
          {0, ActionKind::kForward, 0, 1},
          {0, ActionKind::kBackward, 0, 0},
          {0, ActionKind::kBackward, 0, 1}};
}

TEST(StageLoopTest, SubStepsOfOneActionAtATimeByDefault) {
  absl::StatusOr<StageLoop> loop =
      StageLoop::Create(OneStageSpec(), 0, std::make_unique<OrderedPlanner>(FFBB()));
  ASSERT_THAT(loop, IsOk());
  ASSERT_THAT(loop->EnableSubSteps({{0, ChunkLayers{0, {false, true}}}}), IsOk());
  EXPECT_THAT(loop->Next(), StatusIs(absl::StatusCode::kFailedPrecondition));
  bool overlapped = true;
  const std::vector<std::string> launches = RunSubSteps(*loop, &overlapped);
  EXPECT_TRUE(loop->Done());
  EXPECT_FALSE(overlapped);
  ASSERT_EQ(launches.size(), 24u);  // 4 actions x (dense rest + 5 MoE parts)
  EXPECT_EQ(launches[0], "s0 F c0 mb0 L0 rest (1/6)");
  EXPECT_EQ(launches[2], "s0 F c0 mb0 L1 dispatch (3/6)");
  EXPECT_EQ(launches[13], "s0 B c0 mb0 L1 combine (2/6)");
}

TEST(StageLoopTest, OverlappedPairsInterleaveSubStepsAcrossLanes) {
  absl::StatusOr<StageLoop> loop = StageLoop::Create(
      OneStageSpec(), 0, std::make_unique<OrderedPlanner>(FFBB(), /*overlap_pairs=*/true));
  ASSERT_THAT(loop, IsOk());
  ASSERT_THAT(loop->EnableSubSteps({{0, ChunkLayers{0, {false, true}}}}), IsOk());
  bool overlapped = false;
  const std::vector<std::string> launches = RunSubSteps(*loop, &overlapped);
  EXPECT_TRUE(loop->Done());
  EXPECT_TRUE(overlapped);
  EXPECT_EQ(launches.size(), 24u);
  // F mb1's dispatch goes to the communication lane; B mb0 takes the idle compute lane.
  const auto at = [&](const std::string& text) {
    return std::find(launches.begin(), launches.end(), text) - launches.begin();
  };
  EXPECT_LT(at("s0 B c0 mb0 L1 rest (1/6)"), at("s0 F c0 mb1 L1 experts (4/6)"));
  EXPECT_LT(at("s0 F c0 mb1 L1 dispatch (3/6)"), at("s0 B c0 mb0 L1 rest (1/6)"));
}

// One stage, M = 3, chunk 0 of two MoE layers, 1f1b_overlap's order there: a warm-up pair
// of forwards, B0 (its gradient is F0's loss), the steady-state pair F2 + B1, then B2.
std::vector<Action> OverlapOrder() {
  const auto a = [](ActionKind kind, int mb) { return Action{0, kind, 0, mb}; };
  return {a(ActionKind::kForward, 0), a(ActionKind::kForward, 1),  a(ActionKind::kBackward, 0),
          a(ActionKind::kForward, 2), a(ActionKind::kBackward, 1), a(ActionKind::kBackward, 2)};
}

// Drives `loop` in sub-step mode to the end, finishing in-flight sub-steps oldest first (or
// newest first); while nothing is in flight, `blocked` (if set) delivers an input. Returns
// the communication sub-steps in launch order (SubStepToString, or with `counts` their
// SubStepOrderToString); `overlapped`, if set: sub-steps of two actions were in flight at once.
std::vector<std::string> CommunicationOrder(StageLoop& loop, bool newest_first, bool counts,
                                            const std::function<void()>& blocked,
                                            bool* overlapped) {
  std::vector<std::string> launches;
  std::vector<SubStepOrder> in_flight;
  for (int guard = 0; guard < 1000 && !loop.Done(); ++guard) {
    absl::StatusOr<std::vector<SubStepOrder>> next = loop.NextSubSteps();
    EXPECT_THAT(next, IsOk());
    if (!next.ok()) break;
    for (const SubStepOrder& order : *next) {
      if (order.lane() == SubStepLane::kCommunication) {
        launches.push_back(counts ? SubStepOrderToString(order) : SubStepToString(order.step));
      }
      in_flight.push_back(order);
    }
    if (in_flight.size() == 2 && overlapped != nullptr &&
        in_flight[0].step.action != in_flight[1].step.action) {
      *overlapped = true;  // two lanes busy: one communicates, the other computes
    }
    if (in_flight.empty()) {
      if (!blocked) break;
      blocked();
      continue;
    }
    const auto done = newest_first ? in_flight.end() - 1 : in_flight.begin();
    EXPECT_THAT(loop.SubStepFinished(*done), IsOk());
    in_flight.erase(done);
  }
  EXPECT_TRUE(loop.Done());
  return launches;
}

// The communication sub-steps launched when a driver finishes in-flight sub-steps oldest
// first (`newest_first` false) or newest first: two timings of the same step. `overlapped`:
// whether a dispatch / combine of one action was ever in flight beside another action's
// compute sub-step.
std::vector<std::string> CommunicationLaunches(bool ordered, bool newest_first,
                                               bool* overlapped = nullptr) {
  StepSpec spec = OneStageSpec();
  spec.num_microbatches = 3;
  absl::StatusOr<StageLoop> loop =
      StageLoop::Create(spec, 0, std::make_unique<OrderedPlanner>(OverlapOrder(), true));
  EXPECT_THAT(loop, IsOk());
  EXPECT_THAT(loop->EnableSubSteps({{0, ChunkLayers{0, {true, true}}}}), IsOk());
  if (ordered) loop->OrderCommunication();
  return CommunicationOrder(*loop, newest_first, /*counts=*/true, nullptr, overlapped);
}

// Expert parallelism: the members' all-to-alls must meet in one order whatever the timing.
// Without the rule an overlapped pair's dispatches and combines go as the lanes finish, so
// two timings give two orders; with it, the order is the plan's: groups in start order (the
// pair F0 + F1, the pair B0 + F2, then B1 and B2 alone: two B's never overlap), a pair's
// all-to-alls in their unit-time layout's order, the same for both timings, and a pair still
// overlaps communication with compute.
TEST(StageLoopTest, OrderedCommunicationFollowsThePlansPairsWhateverTheTiming) {
  EXPECT_NE(CommunicationLaunches(false, false), CommunicationLaunches(false, true));
  bool overlapped = false;
  const std::vector<std::string> ordered = CommunicationLaunches(true, false, &overlapped);
  EXPECT_TRUE(overlapped);
  EXPECT_EQ(ordered, CommunicationLaunches(true, true));
  ASSERT_EQ(ordered.size(), 24u);  // 6 actions x 2 MoE layers x (dispatch, combine)
  EXPECT_THAT(std::vector<std::string>(ordered.begin(), ordered.begin() + 3),
              ElementsAre("s0 F c0 mb0 L0 dispatch (2/10)", "s0 F c0 mb1 L0 dispatch (2/10)",
                          "s0 F c0 mb0 L0 combine (4/10)"));
  EXPECT_THAT(std::vector<std::string>(ordered.begin() + 8, ordered.begin() + 12),
              ElementsAre("s0 B c0 mb0 L1 combine (2/10)", "s0 F c0 mb2 L0 dispatch (2/10)",
                          "s0 B c0 mb0 L1 dispatch (4/10)", "s0 F c0 mb2 L0 combine (4/10)"));
  // Then B0's L0 combine and dispatch back to back (its experts between them), while F2
  // computes its rest and attn of L1: the pair laid out with unit times, not a strict
  // alternation.
  EXPECT_THAT(std::vector<std::string>(ordered.begin() + 12, ordered.begin() + 16),
              ElementsAre("s0 B c0 mb0 L0 combine (7/10)", "s0 B c0 mb0 L0 dispatch (9/10)",
                          "s0 F c0 mb2 L1 dispatch (7/10)", "s0 F c0 mb2 L1 combine (9/10)"));
  EXPECT_EQ(ordered[16], "s0 B c0 mb1 L1 combine (2/10)");
  EXPECT_EQ(ordered[20], "s0 B c0 mb2 L1 combine (2/10)");
}

// A pair only where the partner's input is made on the stage, so that the first action's
// turns never wait on other stages: on stage 0 of two (chunk 1 on stage 1), B0's gradient
// comes from stage 1, so F2 goes alone; B0 pairs with F3 (data). Under a memory limit an F
// partner could need the first to free an activation: B0 then goes alone too.
std::vector<std::string> StageZeroOfTwoLaunches(int max_inflight) {
  StepSpec spec = VSpec(4);  // two stages; here one chunk each
  spec.num_chunks = 2;
  spec.chunk_to_stage = {0, 1};
  spec.max_inflight = max_inflight;
  const auto a = [](ActionKind kind, int mb) { return Action{0, kind, 0, mb}; };
  const ActionKind F = ActionKind::kForward, B = ActionKind::kBackward;
  absl::StatusOr<StageLoop> loop = StageLoop::Create(
      spec, 0,
      std::make_unique<OrderedPlanner>(std::vector<Action>{a(F, 0), a(F, 1), a(F, 2), a(B, 0),
                                                           a(F, 3), a(B, 1), a(B, 2), a(B, 3)},
                                       true));
  EXPECT_THAT(loop, IsOk());
  EXPECT_THAT(loop->EnableSubSteps({{0, ChunkLayers{0, {true}}}}), IsOk());
  loop->OrderCommunication();
  int gradients = 0;  // from stage 1, in microbatch order, each once stage 0 is blocked
  return CommunicationOrder(
      *loop, /*newest_first=*/false, /*counts=*/false,
      [&] {
        EXPECT_THAT(loop->InputArrived({ActionKind::kSendBackward, 1, 0, 0, gradients++}), IsOk());
      },
      nullptr);
}

TEST(StageLoopTest, APairsPartnerNeverWaitsForAnotherStage) {
  const std::vector<std::string> pairs = StageZeroOfTwoLaunches(0);
  ASSERT_EQ(pairs.size(), 16u);
  EXPECT_THAT(
      std::vector<std::string>(pairs.begin() + 4, pairs.begin() + 10),
      ElementsAre("s0 F c0 mb2 L0 dispatch", "s0 F c0 mb2 L0 combine", "s0 B c0 mb0 L0 combine",
                  "s0 F c0 mb3 L0 dispatch", "s0 B c0 mb0 L0 dispatch", "s0 F c0 mb3 L0 combine"));
  const std::vector<std::string> limited = StageZeroOfTwoLaunches(3);
  ASSERT_EQ(limited.size(), 16u);
  EXPECT_THAT(std::vector<std::string>(limited.begin() + 6, limited.begin() + 10),
              ElementsAre("s0 B c0 mb0 L0 combine", "s0 B c0 mb0 L0 dispatch",
                          "s0 F c0 mb3 L0 dispatch", "s0 F c0 mb3 L0 combine"));
}

// The plan's pairs: the action after `first` when it may overlap `first` alone; none
// without overlap pairs, and none for two B's.
TEST(StageLoopTest, CommunicationPartnersAreThePlansNextActionThatMayOverlap) {
  const std::vector<Action> order = OverlapOrder();
  const OrderedPlanner pairs(order, /*overlap_pairs=*/true);
  EXPECT_EQ(pairs.CommunicationPartner(order[0]), order[1]);
  EXPECT_EQ(pairs.CommunicationPartner(order[2]), order[3]);
  EXPECT_EQ(pairs.CommunicationPartner(order[4]), std::nullopt);  // B1, then B2
  EXPECT_EQ(pairs.CommunicationPartner(order[5]), std::nullopt);  // the last
  EXPECT_EQ(OrderedPlanner(order).CommunicationPartner(order[0]), std::nullopt);
}

TEST(StageLoopTest, DenseChunksRunWholeInSubStepMode) {
  absl::StatusOr<StageLoop> loop =
      StageLoop::Create(OneStageSpec(), 0, std::make_unique<OrderedPlanner>(FFBB()));
  ASSERT_THAT(loop, IsOk());
  ASSERT_THAT(loop->EnableSubSteps({{0, ChunkLayers{0, {false, false}}}}), IsOk());
  bool overlapped = true;
  const std::vector<std::string> launches = RunSubSteps(*loop, &overlapped);
  EXPECT_THAT(launches, ElementsAre("s0 F c0 mb0 (whole)", "s0 F c0 mb1 (whole)",
                                    "s0 B c0 mb0 (whole)", "s0 B c0 mb1 (whole)"));
}

}  // namespace
}  // namespace stagehand::runtime
