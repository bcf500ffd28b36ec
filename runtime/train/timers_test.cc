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
  EXPECT_THAT(lines[5], HasSubstr("optimizer"));
  EXPECT_THAT(lines[5], HasSubstr(": 2.00 (0.00, 2.00)"));
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

}  // namespace
}  // namespace stagehand::runtime
