// Tests of the batch-size ramp-up against Megatron Core's own unit-test examples
// (tests/unit_tests/test_num_microbatches_calculator.py), and the flag's errors.
#include "runtime/train/batch_rampup.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/planner.h"
#include "runtime/train/step_specs.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::runtime {
namespace {

using ::stagehand::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Megatron's arguments: (rampup, global_batch_size, micro_batch_size, data_parallel_size).
MicrobatchCalculator Make(std::optional<BatchRampup> rampup, int64_t gbs, int mbs, int dp) {
  absl::StatusOr<MicrobatchCalculator> c = MicrobatchCalculator::Create(gbs, mbs, dp, rampup);
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

TEST(MicrobatchCalculatorTest, MegatronConstant) {
  // init_num_microbatches_calculator(0, None, 32, 8, 2, False): 2 microbatches.
  EXPECT_EQ(Make(std::nullopt, 32, 8, 2).Microbatches(0), 2);
  EXPECT_EQ(Make(std::nullopt, 32, 8, 2).GlobalBatch(12345), 32);
  EXPECT_EQ(Make(std::nullopt, 16, 8, 2).Microbatches(0), 1);
}

TEST(MicrobatchCalculatorTest, MegatronRampupConstructor) {
  // RampupBatchsizeNumMicroBatchesCalculator(32, 8, 2, False, 0, 16, 16, 48): M 1, batch 16.
  MicrobatchCalculator c = Make(BatchRampup{16, 16, 48}, 32, 8, 2);
  EXPECT_EQ(c.Microbatches(0), 1);
  EXPECT_EQ(c.GlobalBatch(0), 16);
}

TEST(MicrobatchCalculatorTest, MegatronUpdateNumMicrobatches) {
  // [16, 8, 96], 32, 4, 2: 2 microbatches, then 3 after 48 samples.
  MicrobatchCalculator c = Make(BatchRampup{16, 8, 96}, 32, 4, 2);
  EXPECT_EQ(c.Microbatches(0), 2);
  EXPECT_EQ(c.Microbatches(48), 3);
}

TEST(MicrobatchCalculatorTest, MegatronRampUpConsumedSamples) {
  // test_ramp_up: [16, 16, 96], 32, 8, 2.
  MicrobatchCalculator c = Make(BatchRampup{16, 16, 96}, 32, 8, 2);
  std::vector<int64_t> consumed;
  for (int64_t step = 1; step <= 12; ++step) consumed.push_back(c.ConsumedBefore(step));
  EXPECT_THAT(consumed, ElementsAre(0, 16, 32, 48, 64, 80, 96, 128, 160, 192, 224, 256));
  EXPECT_EQ(c.MicrobatchesOfStep(7), 2);  // consumed 96 = SAMPLES: int(96 / 96) = 1 increment
  EXPECT_EQ(c.MicrobatchesOfStep(6), 1);
  EXPECT_THAT(c.DistinctMicrobatches(1000), ElementsAre(1, 2));
  EXPECT_THAT(c.DistinctMicrobatches(3), ElementsAre(1));
}

TEST(MicrobatchCalculatorTest, MegatronInconsistentBatchIsRefusedUpFront) {
  // [16, 8, 96], 32, 8, 2: Megatron asserts at update(49, True) (24 % 16); we refuse at once.
  EXPECT_THAT(MicrobatchCalculator::Create(32, 8, 2, BatchRampup{16, 8, 96}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("global batch 24 on the way is not a multiple of "
                                 "--micro_batch_size x --dp (16)")));
  EXPECT_THAT(MicrobatchCalculator::Create(32, 8, 1, BatchRampup{40, 8, 96}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("minus START (40)")));
  EXPECT_THAT(MicrobatchCalculator::Create(32, 8, 1, BatchRampup{12, 8, 96}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("multiple of INCREMENT")));
}

TEST(BatchRampupFromFlagTest, ParsesThreeIntegersAndNamesTheFlag) {
  absl::StatusOr<BatchRampup> r = BatchRampupFromFlag("8,8,64");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->start, 8);
  EXPECT_EQ(r->increment, 8);
  EXPECT_EQ(r->samples, 64);
  for (const char* bad : {"8,8", "8,x,64", "0,8,64", "8,8,0", "8,8,64,1"}) {
    EXPECT_THAT(BatchRampupFromFlag(bad),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--rampup_batch_size")))
        << bad;
  }
}

// The step graph of each step under a ramp-up: 8 to 32 sequences of 4 over 96 samples gives
// M = 2, 2, 2, 2, 4, 4, 6, 6, 8, ... (tools/launch's README run).
TEST(StepSpecsTest, EachStepGetsTheSpecOfItsMicrobatchCount) {
  absl::StatusOr<const PlannerDefinition*> planner = PlannerRegistry::Default().Get("1f1b");
  ASSERT_TRUE(planner.ok());
  PlannerOptions options;
  options.num_stages = 4;
  options.num_microbatches = 8;
  absl::StatusOr<StepSpecs> specs =
      StepSpecs::Create(**planner, options, Make(BatchRampup{8, 8, 96}, 32, 4, 1));
  ASSERT_TRUE(specs.ok()) << specs.status();
  EXPECT_TRUE(specs->ramping());
  EXPECT_THAT(specs->DistinctMicrobatches(), ElementsAre(2, 4, 6, 8));
  std::vector<int> m;
  for (int64_t step = 1; step <= 11; ++step) m.push_back(specs->ForStep(step).num_microbatches);
  EXPECT_THAT(m, ElementsAre(2, 2, 2, 2, 4, 4, 6, 6, 8, 8, 8));
  EXPECT_EQ(specs->ForStep(1000).num_microbatches, 8);
  EXPECT_EQ(specs->full().num_microbatches, 8);
  for (int mb : {2, 4, 6}) {
    options.num_microbatches = mb;
    absl::StatusOr<StepSpec> alone = (*planner)->MakeSpec(options);
    ASSERT_TRUE(alone.ok());
    const int64_t step = mb == 2 ? 1 : mb == 4 ? 5 : 7;
    EXPECT_EQ(specs->ForStep(step).chunk_to_stage, alone->chunk_to_stage);
    EXPECT_EQ(specs->ForStep(step).num_microbatches, alone->num_microbatches);
  }
  // Constant: one spec for every step.
  const StepSpecs constant = StepSpecs::Constant(specs->full());
  EXPECT_FALSE(constant.ramping());
  EXPECT_EQ(constant.ForStep(1).num_microbatches, 8);
}

// 1f1b, except that it refuses `refused` microbatches and puts `moved` microbatches' chunk 0
// on the last stage.
class PickyPlanner : public PlannerDefinition {
 public:
  PickyPlanner(int refused, int moved) : refused_(refused), moved_(moved) {}
  std::string name() const override { return "picky"; }
  std::string description() const override { return "test"; }
  absl::StatusOr<StepSpec> MakeSpec(const PlannerOptions& options) const override {
    if (options.num_microbatches == refused_) return absl::InvalidArgumentError("not this M");
    absl::StatusOr<StepSpec> spec = Base().MakeSpec(options);
    if (spec.ok() && options.num_microbatches == moved_) {
      spec->chunk_to_stage[0] = spec->num_stages - 1;
    }
    return spec;
  }
  std::unique_ptr<Planner> MakePlanner(const StepSpec& spec, int stage) const override {
    return Base().MakePlanner(spec, stage);
  }

 private:
  static const PlannerDefinition& Base() { return **PlannerRegistry::Default().Get("1f1b"); }
  int refused_, moved_;
};

TEST(StepSpecsTest, AnMThePlannerRefusesOrLaysOutElsewhereIsRefusedNamingIt) {
  PlannerOptions options;
  options.num_stages = 4;
  options.num_microbatches = 8;
  const MicrobatchCalculator ramp = Make(BatchRampup{8, 8, 96}, 32, 4, 1);
  EXPECT_THAT(StepSpecs::Create(PickyPlanner(4, 0), options, ramp),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("the planner picky refuses 4 microbatches (step 5): not this M")));
  EXPECT_THAT(StepSpecs::Create(PickyPlanner(0, 6), options, ramp),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("lays out 6 microbatches on other stages or chunks than 8")));
  EXPECT_TRUE(StepSpecs::Create(PickyPlanner(0, 0), options, ramp).ok());
}

}  // namespace
}  // namespace stagehand::runtime
