// Tests for the rerun state machine: healthy steps apply, a bad step is re-run, a bitwise
// repeat is persistent (stop or skip), a differing healthy rerun is transient and counted
// per rank, spikes against the running median. Not an end-to-end test: actors/ runs steps.
#include "runtime/train/rerun.h"

#include <cmath>
#include <limits>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::runtime {
namespace {

using ::stagehand::testing::StatusIs;
using ::testing::HasSubstr;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Two stages: stage 0 (chunk 0: wte, w0), stage 1 (chunk 1: w1) computes the loss.
StepAttempt Attempt(double loss0, double loss1, double w0 = 1.0, double w1 = 2.0) {
  StepAttempt a;
  a.losses = {loss0, loss1};
  a.loss_stage = 1;
  a.norms = {{0, 0, "wte", 0.5}, {0, 0, "h.0.w", w0}, {1, 1, "h.1.w", w1}};
  return a;
}

TEST(RerunStateMachineTest, HealthyStepsApplyWithoutAWord) {
  RerunStateMachine m(RerunOptions{}, {0, 1});
  for (int step = 1; step <= 3; ++step) {
    RerunDecision d = m.Check(step, Attempt(2.0, 2.1));
    EXPECT_EQ(d.verdict, StepVerdict::kApply);
    EXPECT_EQ(d.message, "");
  }
}

TEST(RerunStateMachineTest, NonFiniteLossAsksForARerunNamingMicrobatchesAndTensor) {
  RerunStateMachine m(RerunOptions{}, {0, 1});
  RerunDecision d = m.Check(4, Attempt(2.0, kNaN, kNaN, kNaN));
  EXPECT_EQ(d.verdict, StepVerdict::kRerun);
  EXPECT_THAT(d.message, HasSubstr("step 4: non-finite loss in microbatch 1 (stage 1)"));
  EXPECT_THAT(d.message, HasSubstr("first non-finite gradient h.0.w of chunk 0 on stage 0"));
}

TEST(RerunStateMachineTest, BitwiseRepeatIsPersistentAndStopsWithTheReport) {
  RerunStateMachine m(RerunOptions{}, {0, 1});
  ASSERT_EQ(m.Check(4, Attempt(2.0, kNaN, kNaN, kNaN)).verdict, StepVerdict::kRerun);
  RerunDecision d = m.Check(4, Attempt(2.0, kNaN, kNaN, kNaN));
  EXPECT_EQ(d.verdict, StepVerdict::kStop);
  EXPECT_THAT(d.message, HasSubstr("persistent fault"));
  EXPECT_THAT(d.message, HasSubstr("step 4: non-finite loss in microbatch 1"));
  EXPECT_THAT(d.message, HasSubstr("h.0.w"));
}

TEST(RerunStateMachineTest, PersistentWithSkipSkipsTheBatch) {
  RerunOptions o;
  o.on_bad_step = OnBadStep::kSkip;
  RerunStateMachine m(o, {0, 1});
  ASSERT_EQ(m.Check(2, Attempt(kNaN, kNaN, kNaN, kNaN)).verdict, StepVerdict::kRerun);
  RerunDecision d = m.Check(2, Attempt(kNaN, kNaN, kNaN, kNaN));
  EXPECT_EQ(d.verdict, StepVerdict::kSkip);
  EXPECT_THAT(d.message, HasSubstr("skipped the batch of step 2"));
  EXPECT_THAT(d.message, HasSubstr("microbatches 0, 1"));
  // The next step starts afresh.
  EXPECT_EQ(m.Check(3, Attempt(2.0, 2.0)).verdict, StepVerdict::kApply);
}

TEST(RerunStateMachineTest, FlippedExponentBitIsCaughtAsNonFiniteInFloat32) {
  RerunStateMachine m(RerunOptions{}, {0, 0, 1});
  StepAttempt a = Attempt(2.0, 2.1, 1.0, 1e60);  // finite in double, Inf as an fp32 norm
  a.norms[2].stage = 2;
  RerunDecision d = m.Check(7, a);
  EXPECT_EQ(d.verdict, StepVerdict::kRerun);
  EXPECT_THAT(d.message, HasSubstr("h.1.w of chunk 1 on stage 2 (rank 1"));
}

TEST(RerunStateMachineTest, DifferentHealthyRerunIsTransientCountedForTheRankOfTheStage) {
  RerunOptions o;
  o.max_transient = 1;
  RerunStateMachine m(o, {0, 1});
  for (int step : {3, 5}) {
    ASSERT_EQ(m.Check(step, Attempt(2.0, 2.1, 1.0, 1e60)).verdict, StepVerdict::kRerun);
    RerunDecision d = m.Check(step, Attempt(2.0, 2.1));
    EXPECT_EQ(d.verdict, StepVerdict::kApply);
    EXPECT_THAT(d.message, HasSubstr("transient fault on rank 1 (stage 1)"));
    EXPECT_EQ(d.message.find("--max_transient") != std::string::npos, step == 5) << d.message;
  }
  EXPECT_EQ(m.transient_faults().at(1), 2);
  EXPECT_EQ(m.transient_faults().count(0), 0u);
}

TEST(RerunStateMachineTest, DifferingBadRunsEndAsPersistentAfterMaxAttempts) {
  RerunOptions o;
  o.max_attempts = 3;
  RerunStateMachine m(o, {0, 1});
  EXPECT_EQ(m.Check(1, Attempt(kNaN, 1.0)).verdict, StepVerdict::kRerun);
  EXPECT_EQ(m.Check(1, Attempt(1.0, kNaN)).verdict, StepVerdict::kRerun);
  RerunDecision d = m.Check(1, Attempt(kNaN, kNaN));
  EXPECT_EQ(d.verdict, StepVerdict::kStop);
  EXPECT_THAT(d.message, HasSubstr("3 runs, all bad"));
}

TEST(RerunStateMachineTest, SpikeAgainstTheRunningMedianOfAppliedSteps) {
  RerunOptions o;
  o.spike_factor = 2.0;
  o.spike_min_history = 3;
  RerunStateMachine m(o, {0, 1});
  // Too little history: no spike check yet.
  m.SeedHistory({3.0, kNaN});  // a skipped step's NaN does not count
  EXPECT_EQ(m.Check(2, Attempt(9.0, 9.0)).verdict, StepVerdict::kApply);
  EXPECT_EQ(m.Check(3, Attempt(3.0, 3.0)).verdict, StepVerdict::kApply);
  // History {3, 9, 3}: median 3; 7 > 2 x 3.
  RerunDecision d = m.Check(4, Attempt(7.0, 7.0));
  EXPECT_EQ(d.verdict, StepVerdict::kRerun);
  EXPECT_THAT(d.message,
              HasSubstr("loss spike 7.000000 > --spike_factor=2 x running median 3.000000"));
  EXPECT_EQ(m.Check(4, Attempt(7.0, 7.0)).verdict, StepVerdict::kStop);
  // 5.9 < 6: not a spike.
  EXPECT_EQ(m.Check(5, Attempt(5.9, 5.9)).verdict, StepVerdict::kApply);
}

TEST(RerunStateMachineTest, DisabledAppliesEverything) {
  RerunOptions o;
  o.enabled = false;
  RerunStateMachine m(o, {});
  EXPECT_EQ(m.Check(1, Attempt(kNaN, kNaN)).verdict, StepVerdict::kApply);
}

TEST(OnBadStepTest, NamesParseAndOthersNameTheFlag) {
  EXPECT_EQ(*OnBadStepFromName("skip"), OnBadStep::kSkip);
  EXPECT_EQ(*OnBadStepFromName("stop"), OnBadStep::kStop);
  EXPECT_THAT(OnBadStepFromName("ignore"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--on_bad_step=ignore")));
}

}  // namespace
}  // namespace stagehand::runtime
