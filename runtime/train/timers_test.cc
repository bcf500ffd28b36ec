// Tests of the phase timers: sums over stages, min/max, stragglers against the median, the
// report's lines. Not a timing test: no clock runs here.
#include "runtime/train/timers.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stagehand::runtime {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(PhaseTimersTest, SumsOverStagesWithMinAndMax) {
  PhaseTimers t({0, 0, 1, 1});
  for (int s = 0; s < 4; ++s) t.Add(s, TimerPhase::kForward, 0.010 * (s + 1));
  t.Add(3, TimerPhase::kOptimizer, 0.002);
  EXPECT_DOUBLE_EQ(t.Totals()[static_cast<int>(TimerPhase::kForward)], 0.100);
  const std::vector<std::string> lines = t.Report(1, 10);
  EXPECT_EQ(lines[0], "timers (ms) steps 1-10, summed over 4 stages (min, max over stages):");
  EXPECT_EQ(lines[1], "    forward ............................: 100.00 (10.00, 40.00)");
  EXPECT_EQ(lines[4], "    transfers exposed ..................: 0.00 (0.00, 0.00)");
  EXPECT_EQ(lines[5], "    idle (bubble) ......................: 0.00 (0.00, 0.00)");
  EXPECT_THAT(lines[6], HasSubstr("optimizer"));
  EXPECT_THAT(lines[6], HasSubstr(": 2.00 (0.00, 2.00)"));
  EXPECT_EQ(lines.size(), 1u + kNumTimerPhases + 1u);  // stage 3: 40 > 1.5 x median 25
}

TEST(PhaseTimersTest, AStageOverOneAndAHalfTimesTheMedianIsNamed) {
  PhaseTimers t({0, 1, 2, 3});
  for (double s : {0.0, 1.0, 3.0}) t.Add(static_cast<int>(s), TimerPhase::kBackwardInput, 0.020);
  t.Add(2, TimerPhase::kBackwardInput, 0.031);  // 31 ms > 1.5 x 20 ms
  EXPECT_THAT(
      t.Stragglers(1.5),
      ElementsAre("straggler: stage 2 (rank 2) backward-input 31.00 ms > 1.5 x median 20.00 ms"));
  EXPECT_TRUE(t.Stragglers(2.0).empty());
  PhaseTimers tiny({0, 0, 0});  // 3x the median, but only 2 ms more: noise
  for (int s = 0; s < 3; ++s) tiny.Add(s, TimerPhase::kDataLoading, s == 1 ? 0.003 : 0.001);
  EXPECT_TRUE(tiny.Stragglers(1.5).empty());
}

TEST(PhaseTimersTest, AddStepAccumulatesAndResetClears) {
  PhaseTimers t({0, 0});
  PhaseSeconds a{}, b{};
  a[static_cast<int>(TimerPhase::kIdle)] = 0.5;
  b[static_cast<int>(TimerPhase::kIdle)] = 0.25;
  t.AddStep({a, b});
  t.AddStep({a, b});
  EXPECT_DOUBLE_EQ(t.per_stage()[0][static_cast<int>(TimerPhase::kIdle)], 1.0);
  EXPECT_DOUBLE_EQ(t.Totals()[static_cast<int>(TimerPhase::kIdle)], 1.5);
  t.Reset();
  EXPECT_DOUBLE_EQ(t.Totals()[static_cast<int>(TimerPhase::kIdle)], 0.0);
}

// Idle [10, 50): an input handed off at 20 and arrived at 35 exposes 15 (20..35); the wait
// before 20 was bubble (its producer still computed), after 35 the planner's choice.
TEST(ExposedTransferWaitTest, IsTheIdleTimeWhileTheInputWasInFlight) {
  EXPECT_DOUBLE_EQ(ExposedTransferWait(10, 50, 20, 35), 15);
  EXPECT_DOUBLE_EQ(ExposedTransferWait(10, 50, 0, 35), 25);   // in flight before the idle
  EXPECT_DOUBLE_EQ(ExposedTransferWait(10, 50, 0, 5), 0);     // arrived while the lane ran
  EXPECT_DOUBLE_EQ(ExposedTransferWait(10, 50, 35, 35), 0);   // unknown hand-off: none
  EXPECT_DOUBLE_EQ(ExposedTransferWait(10, 30, 20, 40), 10);  // never past the start
}

TEST(TransferWaitClockTest, SumsEachActionsTransferredInputOnce) {
  TransferWaitClock clock;
  clock.StepStarted(0);
  clock.InputArrived(/*gradient=*/false, 1, 0, /*handed_off_ns=*/1000, /*arrived_ns=*/4000);
  clock.Started(true, false, 1, 0, 4000);  // F c1 mb0: idle 0..4000, in flight 1000..4000
  clock.LaneFreed(9000);
  clock.InputArrived(false, 1, 1, 2000, 8000);  // arrived while F mb0 ran: nothing exposed
  clock.Started(true, false, 1, 1, 9000);
  clock.LaneFreed(12000);
  clock.InputArrived(true, 1, 0, 13000, 15000);
  clock.Started(false, false, 1, 0, 12500);  // a W: no transferred input
  clock.Started(true, true, 1, 0, 15000);    // I c1 mb0: 13000..15000
  clock.Started(true, true, 1, 0, 16000);    // counted once
  clock.Started(true, false, 0, 5, 17000);   // from the same stage: not a transfer
  EXPECT_DOUBLE_EQ(clock.seconds(), 5e-6);
  clock.StepStarted(20000);
  EXPECT_DOUBLE_EQ(clock.seconds(), 0.0);
}

// --dp=2 --stages=2: the four ranks of the grid (rank r = replica r % 2's stage r / 2).
TEST(PhaseTimersTest, GridSumsOverEveryRankAndNamesStragglersByReplicaAndStage) {
  PhaseTimers t = PhaseTimers::Grid(2, 2);
  t.AddStep({{0.010}, {0.011}, {0.012}, {0.040}});  // forward, rank 3: replica 1's stage 1
  const std::vector<std::string> lines = t.Report(1, 1);
  EXPECT_EQ(lines[0],
            "timers (ms) steps 1-1, summed over 4 ranks (dp 2 x pp 2; min, max over ranks):");
  EXPECT_NE(lines[1].find(": 73.00 (10.00, 40.00)"), std::string::npos) << lines[1];
  EXPECT_THAT(
      t.Stragglers(1.5),
      ElementsAre("straggler: rank 3 (dp 1, pp 1) forward 40.00 ms > 1.5 x median 11.50 ms"));
  EXPECT_EQ(PhaseTimers::Grid(1, 3).Report(1, 1)[0],
            "timers (ms) steps 1-1, summed over 3 stages (min, max over stages):");
}

TEST(PhaseTimersTest, RankOrderPutsReplicaDsStageSAtRankSTimesDPlusD) {
  const std::vector<std::vector<double>> ranks =
      RankOrder({{{1.0}, {2.0}}, {{3.0}, {4.0}}});  // replica 0: stages 0, 1; replica 1
  EXPECT_THAT(ranks,
              ElementsAre(ElementsAre(1.0), ElementsAre(3.0), ElementsAre(2.0), ElementsAre(4.0)));
}

}  // namespace
}  // namespace stagehand::runtime
