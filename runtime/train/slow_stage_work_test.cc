// Tests of SlowStageWork and --slow_stage parsing: the stretch is a multiple of the measured
// compute, the optimizer phases are not stretched, bad flags are named.
// Not a pipeline test: launch's --slow_stage runs are in tools/slow_stage_bench.sh.
#include "runtime/train/slow_stage_work.h"

#include <chrono>
#include <map>
#include <memory>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::runtime {
namespace {

using ::stagehand::testing::IsOk;
using ::stagehand::testing::StatusIs;
using ::testing::HasSubstr;

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

TEST(SlowStageWorkTest, StretchesEachComputeByTheFactorOfItsMeasuredTime) {
  SyntheticDurations durations;
  durations.forward_us = 3000;  // sleeps 3 ms
  SlowStageWork work(std::make_unique<SyntheticStageWork>(durations, 2), 2.0);
  Payload output;
  double loss = 0;
  const auto begin = std::chrono::steady_clock::now();
  ASSERT_THAT(work.Forward(0, 0, nullptr, &output, &loss), IsOk());
  const double total = Seconds(begin);
  EXPECT_GE(work.stretched_seconds(), 0.003);  // at least (2 - 1) x the 3 ms it took
  EXPECT_GE(total, 0.006);
  EXPECT_GE(total, 2 * (total - work.stretched_seconds()) - 1e-4);  // busy >= factor x work
}

TEST(SlowStageWorkTest, FactorOneAddsNothing) {
  SyntheticDurations durations;
  durations.forward_us = 1000;
  SlowStageWork work(std::make_unique<SyntheticStageWork>(durations, 2), 1.0);
  Payload output;
  double loss = 0;
  ASSERT_THAT(work.Forward(0, 0, nullptr, &output, &loss), IsOk());
  EXPECT_LT(work.stretched_seconds(), 1e-3);
}

// A synthetic work that answers the data-parallel and checkpoint calls as a real one would.
class Answering : public SyntheticStageWork {
 public:
  Answering() : SyntheticStageWork(SyntheticDurations{}, 2) {}
  absl::Status GatherLosses(std::vector<double>* losses) override {
    losses->push_back(42);  // another replica's
    return absl::OkStatus();
  }
  int64_t OptimizerStateBytes() const override { return 1234; }
  absl::Status ExportOptimizerState() override {
    ++exports;
    return absl::OkStatus();
  }
  std::map<int, int64_t> GradientFloats() const override { return {{1, 77}}; }
  int exports = 0;
};

// Every call the slowed stage does not stretch reaches the inner work: with --dp the loss
// stage's gathering of every replica's losses, and the optimizer-state bytes (both were
// dropped before, so --dp --slow_stage reported one replica's losses and 0 bytes).
TEST(SlowStageWorkTest, PassesEveryOtherCallToTheInnerWork) {
  auto inner = std::make_unique<Answering>();
  Answering* answering = inner.get();
  SlowStageWork work(std::move(inner), 2.0);
  std::vector<double> losses = {1.0};
  ASSERT_THAT(work.GatherLosses(&losses), IsOk());
  EXPECT_EQ(losses, (std::vector<double>{1.0, 42.0}));
  EXPECT_EQ(work.OptimizerStateBytes(), 1234);
  ASSERT_THAT(work.ExportOptimizerState(), IsOk());
  EXPECT_EQ(answering->exports, 1);
  EXPECT_EQ(work.GradientFloats(), (std::map<int, int64_t>{{1, 77}}));
}

TEST(SlowStageWorkTest, ParsesTheFlag) {
  absl::StatusOr<SlowStage> none = ParseSlowStage("", 4);
  ASSERT_THAT(none.status(), IsOk());
  EXPECT_EQ(none->stage, -1);
  absl::StatusOr<SlowStage> slow = ParseSlowStage("2:1.5", 4);
  ASSERT_THAT(slow.status(), IsOk());
  EXPECT_EQ(slow->stage, 2);
  EXPECT_DOUBLE_EQ(slow->factor, 1.5);
}

TEST(SlowStageWorkTest, RejectsBadFlagsByName) {
  EXPECT_THAT(
      ParseSlowStage("2", 4).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--slow_stage=2: want S:FACTOR")));
  EXPECT_THAT(ParseSlowStage("4:2", 4).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("stage 4 is not in [0, --stages = 4)")));
  EXPECT_THAT(
      ParseSlowStage("1:0.5", 4).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("FACTOR must be a number >= 1")));
}

}  // namespace
}  // namespace stagehand::runtime
