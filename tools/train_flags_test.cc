// Tests of the training flags' validation: absurd or non-finite hyperparameters, sizes whose
// element counts would overflow, and process counts, each refused with the flag named.
// Not tests of flag parsing or of the manifest's run description.
#include "tools/train_flags.h"

#include <cmath>
#include <limits>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
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

TEST(ValidateTrainConfigTest, ATypicalRunIsValid) { EXPECT_THAT(ValidateTrainConfig(Valid()), IsOk()); }

TEST(ValidateTrainConfigTest, NonFiniteOrAbsurdHyperparametersNameTheFlag) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  for (auto [member, value, flag] : std::vector<std::tuple<double ops::AdamWOptions::*, double, const char*>>{
           {&ops::AdamWOptions::learning_rate, 1e300, "--lr"},
           {&ops::AdamWOptions::learning_rate, nan, "--lr"},
           {&ops::AdamWOptions::learning_rate, inf, "--lr"},
           {&ops::AdamWOptions::weight_decay, 1e300, "--weight_decay"},
           {&ops::AdamWOptions::weight_decay, nan, "--weight_decay"}}) {
    TrainConfig c = Valid();
    c.optimizer.adamw.*member = value;
    EXPECT_THAT(ValidateTrainConfig(c), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(flag)))
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
  for (auto [b, t] : std::vector<std::pair<int, int>>{{65536, 65536}, {65536, 65537}, {1, 2147483647}}) {
    TrainConfig c = Valid();
    c.chunk.micro_batch_size = b;
    c.chunk.seq_len = t;
    c.model.max_seq_len = t;
    EXPECT_THAT(ValidateTrainConfig(c), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at most")))
        << b << "x" << t;
  }
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

}  // namespace
}  // namespace stagehand::tools
