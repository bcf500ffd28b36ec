// Tests of StallDetector: when a step is declared stalled, and when it is not.
// Not tests of the actors that feed it (actors/pipeline_test.cc runs a real stall).
#include "runtime/stall_detector.h"

#include <optional>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stagehand::runtime {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Optional;

StageProgress Blocked(int stage, int64_t sent, int64_t received, std::string waiting = "") {
  return StageProgress{stage, true, false, sent, received, std::move(waiting)};
}
StageProgress Done(int stage, int64_t sent, int64_t received) {
  return StageProgress{stage, false, true, sent, received, ""};
}
StageProgress Busy(int stage) { return StageProgress{stage, false, false, 0, 0, ""}; }

TEST(StallDetectorTest, ProbesOnlyWhenEveryStageIsBlockedOrDoneWithNothingInFlight) {
  StallDetector detector(2);
  detector.Reset(7);
  EXPECT_EQ(detector.OnReport(Blocked(0, 1, 0)), std::nullopt);  // stage 1 unheard
  EXPECT_EQ(detector.OnReport(Busy(1)), std::nullopt);
  EXPECT_EQ(detector.OnReport(Blocked(1, 0, 0)), std::nullopt);  // one tensor in flight
  EXPECT_EQ(detector.OnReport(Blocked(1, 0, 1)), std::optional<int>(1));
}

TEST(StallDetectorTest, AConfirmedWaveReportsEveryWaitingStage) {
  StallDetector detector(2);
  detector.Reset(7);
  detector.OnReport(Blocked(0, 1, 0));
  const std::optional<int> wave = detector.OnReport(Done(1, 0, 1));
  ASSERT_TRUE(wave.has_value());
  EXPECT_EQ(detector.OnProbeReply(*wave, Blocked(0, 1, 0, "s0: waits for gradient")), std::nullopt);
  EXPECT_THAT(
      detector.OnProbeReply(*wave, Done(1, 0, 1)),
      Optional(AllOf(HasSubstr("step 7 stalled"), HasSubstr("\n  s0: waits for gradient"))));
}

TEST(StallDetectorTest, ProgressBetweenTheWaveAndItsRepliesIsNotAStall) {
  StallDetector detector(2);
  detector.Reset(1);
  detector.OnReport(Blocked(0, 1, 0));
  const std::optional<int> wave = detector.OnReport(Blocked(1, 0, 1));
  ASSERT_TRUE(wave.has_value());
  // Counters moved: stage 0 sent another tensor, and stage 1 received it, since the wave.
  EXPECT_EQ(detector.OnProbeReply(*wave, Blocked(0, 2, 0)), std::nullopt);
  EXPECT_EQ(detector.OnProbeReply(*wave, Blocked(1, 0, 2)), std::nullopt);
}

TEST(StallDetectorTest, RepliesToAnOlderWaveAreIgnored) {
  StallDetector detector(1);
  detector.Reset(1);
  const std::optional<int> first = detector.OnReport(Blocked(0, 0, 0));
  const std::optional<int> second = detector.OnReport(Blocked(0, 0, 0));
  ASSERT_TRUE(first && second);
  EXPECT_NE(*first, *second);
  EXPECT_EQ(detector.OnProbeReply(*first, Blocked(0, 0, 0)), std::nullopt);
  EXPECT_NE(detector.OnProbeReply(*second, Blocked(0, 0, 0)), std::nullopt);
}

}  // namespace
}  // namespace stagehand::runtime
