// Tests of the training flags' validation: flag combinations in which a flag would be
// silently ignored, absurd or non-finite hyperparameters, sizes whose element counts would
// overflow, and process counts, each refused with the flag named. Not tests of flag parsing
// (tests/launch_test.sh runs the binary).
#include "tools/train_flags.h"

#include <cmath>
#include <limits>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/planner.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::tools {
namespace {

using ::stagehand::testing::IsOk;
using ::stagehand::testing::StatusIs;
using ::testing::HasSubstr;

TrainConfig Valid() {
  TrainConfig c;
  c.steps = 10;
  c.stages = 2;
  c.model = models::UniformGpt(4, 64, 4, 256, 64, 1);
  c.chunk = {4, 64, 2};
  c.optimizer.adamw.learning_rate = 3e-4;
  c.optimizer.adamw.weight_decay = 0.1;
  c.optimizer.grad_clip = 1.0;
  return c;
}

TEST(ValidateTrainConfigTest, ATypicalRunIsValid) {
  EXPECT_THAT(ValidateTrainConfig(Valid()), IsOk());
}

TEST(ValidateTrainConfigTest, NonFiniteOrAbsurdHyperparametersNameTheFlag) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  for (auto [member, value, flag] :
       std::vector<std::tuple<double ops::AdamWOptions::*, double, const char*>>{
           {&ops::AdamWOptions::learning_rate, 1e300, "--lr"},
           {&ops::AdamWOptions::learning_rate, nan, "--lr"},
           {&ops::AdamWOptions::learning_rate, inf, "--lr"},
           {&ops::AdamWOptions::weight_decay, 1e300, "--weight_decay"},
           {&ops::AdamWOptions::weight_decay, nan, "--weight_decay"}}) {
    TrainConfig c = Valid();
    c.optimizer.adamw.*member = value;
    EXPECT_THAT(ValidateTrainConfig(c),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(flag)))
        << flag << "=" << value;
  }
  for (double clip : {nan, inf, 1e300}) {
    TrainConfig c = Valid();
    c.optimizer.grad_clip = clip;
    EXPECT_THAT(ValidateTrainConfig(c),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--grad_clip")));
  }
}

TEST(ValidateTrainConfigTest, TokensPerMicrobatchBeyondTheLimitAreRefused) {
  for (auto [b, t] :
       std::vector<std::pair<int, int>>{{65536, 65536}, {65536, 65537}, {1, 2147483647}}) {
    TrainConfig c = Valid();
    c.chunk.micro_batch_size = b;
    c.chunk.seq_len = t;
    c.model.max_seq_len = t;
    EXPECT_THAT(ValidateTrainConfig(c),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at most")))
        << b << "x" << t;
  }
}

TEST(ValidateProcessCountTest, WithDataParallelismTheProcessesAreReplicasTimesStages) {
  EXPECT_THAT(ValidateProcessCount(4, 2, 2), IsOk());
  EXPECT_THAT(ValidateProcessCount(0, 2, 2), IsOk());  // not a cluster run
  EXPECT_THAT(ValidateProcessCount(3, 2, 2),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--nprocs must be --dp x --stages = 4")));
  EXPECT_THAT(ValidateProcessCount(2, 2, 2), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ValidateProcessCountTest, RefusesWhatCannotRunBeforeAnyFork) {
  EXPECT_THAT(ValidateProcessCount(4, 4), IsOk());
  EXPECT_THAT(ValidateProcessCount(2, 4), IsOk());
  EXPECT_THAT(ValidateProcessCount(0, 4), IsOk());  // not a cluster run
  EXPECT_THAT(ValidateProcessCount(-1, 4),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--nprocs=-1")));
  EXPECT_THAT(ValidateProcessCount(5, 4),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--stages=4")));
  EXPECT_THAT(ValidateProcessCount(100000, 100000),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at most")));
}

const runtime::PlannerRegistry& Planners() { return runtime::PlannerRegistry::Default(); }

TEST(ValidateZeroFlagTest, ZeroOneNeedsReplicasAndOtherValuesAreRefused) {
  EXPECT_TRUE(ValidateZeroFlag(0, 1).ok());
  EXPECT_TRUE(ValidateZeroFlag(1, 2).ok());
  const absl::Status alone = ValidateZeroFlag(1, 1);
  EXPECT_EQ(alone.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(alone.message(), HasSubstr("--zero=1 shards the optimizer state over the --dp"));
  EXPECT_THAT(ValidateZeroFlag(3, 2).message(), HasSubstr("--zero=3: must be 0"));
}

TEST(ValidateExpertFlagTest, EpMustDivideDp) {
  EXPECT_TRUE(ValidateExpertFlag(1, 1).ok());
  EXPECT_TRUE(ValidateExpertFlag(2, 4).ok());
  EXPECT_THAT(ValidateExpertFlag(2, 3).message(), HasSubstr("--ep=2 must divide --dp=3"));
  EXPECT_THAT(ValidateExpertFlag(2, 1).message(), HasSubstr("--ep=2 must divide --dp=1"));
  EXPECT_THAT(ValidateExpertFlag(0, 2).message(), HasSubstr("--ep=0: must be >= 1"));
}

TEST(ValidateScheduleFlagsTest, PlannerWithScheduleIsAnError) {
  const absl::Status s = ValidateScheduleFlags({"zb_h1", "plan.csv", {4, 8}}, Planners());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("--planner=zb_h1 and --schedule=plan.csv both choose the "
                                     "plan, and the file would win silently"));
}

TEST(ValidateScheduleFlagsTest, ChunksPerStageWithScheduleIsAnError) {
  EXPECT_THAT(ValidateScheduleFlags({"", "plan.csv", {4, 8, 0, 2}}, Planners()).message(),
              HasSubstr("--chunks_per_stage=2 is ignored with --schedule"));
}

TEST(ValidateScheduleFlagsTest, ChunksPerStageWithAFixedShapePlannerIsAnError) {
  EXPECT_THAT(ValidateScheduleFlags({"1f1b", "", {4, 8, 0, 2}}, Planners()).message(),
              HasSubstr("--chunks_per_stage=2 is ignored by planner 1f1b, which places 4 chunks "
                        "on 4 stages"));
  // The default planner is 1f1b too.
  EXPECT_THAT(ValidateScheduleFlags({"", "", {4, 8, 0, 3}}, Planners()).message(),
              HasSubstr("ignored by planner 1f1b"));
  EXPECT_THAT(ValidateScheduleFlags({"zb_v", "", {4, 8, 0, 3}}, Planners()).message(),
              HasSubstr("ignored by planner zb_v, which places 8 chunks on 4 stages"));
}

TEST(ValidateScheduleFlagsTest, HonouredCombinationsPass) {
  EXPECT_TRUE(ValidateScheduleFlags({"interleaved", "", {4, 8, 0, 3}}, Planners()).ok());
  EXPECT_TRUE(ValidateScheduleFlags({"looped_bfs", "", {4, 8, 0, 2}}, Planners()).ok());
  EXPECT_TRUE(ValidateScheduleFlags({"1f1b", "", {4, 8, 0, 1}}, Planners()).ok());  // v = 1
  EXPECT_TRUE(ValidateScheduleFlags({"", "plan.csv", {4, 8}}, Planners()).ok());
  EXPECT_TRUE(ValidateScheduleFlags({"zb_h1", "", {4, 8}}, Planners()).ok());
  // An unknown name is left to the registry lookup, which lists the known ones.
  EXPECT_TRUE(ValidateScheduleFlags({"no_such", "", {4, 8, 0, 2}}, Planners()).ok());
}

TEST(ValidateDryRunFlagsTest, AnOutputWithDryRunIsAnError) {
  EXPECT_THAT(ValidateDryRunFlags(true, {{"--save_params", ""}, {"--trace", "t.json"}}).message(),
              HasSubstr("--dry_run trains nothing, so --trace=t.json would be ignored"));
  EXPECT_TRUE(ValidateDryRunFlags(true, {{"--trace", ""}}).ok());
  EXPECT_TRUE(ValidateDryRunFlags(false, {{"--trace", "t.json"}}).ok());
}

}  // namespace
}  // namespace stagehand::tools
