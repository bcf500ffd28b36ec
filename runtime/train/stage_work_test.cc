// ModelStageWork with variable-length microbatches: outputs and input gradients sized by the
// microbatch's T_m, and a received tensor of the wrong size refused naming what differs.
// Not a parity test (actors/planner_parity_test.cc trains whole pipelines).
#include "runtime/train/stage_work.h"

#include <memory>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/gpt_chunk.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::runtime {
namespace {

using ::stagehand::testing::IsOk;
using ::stagehand::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr int kB = 2, kT = 8, kC = 16;

// A 4-layer model cut in two, both chunks on one stage, training windows of variable length
// (a budget of 10 tokens: T_m in [1, 5]).
struct TwoChunks {
  TwoChunks() {
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>(i * 7919 % 256);
    sampler.SetSeqLenPolicy(SeqLenPolicy::kVariable, 10);
    const models::GptConfig config = models::UniformGpt(4, kC, 2, 256, kT, 11);
    const std::vector<models::ChunkSpec> specs = *models::CutLayers(4, 2);
    for (int c = 0; c < 2; ++c) chunks.push_back(*Chunk::Create(config, specs[c], {kB, kT, 4}));
    work = std::make_unique<ModelStageWork>(
        std::map<int, Chunk*>{{0, chunks[0].get()}, {1, chunks[1].get()}}, 2, &sampler, 4,
        OptimizerConfig{});
  }
  std::vector<int32_t> tokens = std::vector<int32_t>(4096);
  WindowSampler sampler{&tokens, kB, kT, 3};
  std::vector<std::unique_ptr<Chunk>> chunks;
  std::unique_ptr<ModelStageWork> work;
};

// The step's first microbatch of a length other than `length`.
int OtherLengthMicrobatch(const WindowSampler& sampler, int64_t step, int length) {
  for (int mb = 0; mb < 4; ++mb) {
    if (sampler.Length(step, mb) != length) return mb;
  }
  return -1;
}

TEST(ModelStageWorkTest, OutputsAndInputGradientsAreSizedByTheMicrobatchLength) {
  TwoChunks t;
  t.work->BeginStep(1, 4);
  for (int mb = 0; mb < 4; ++mb) {
    const int64_t floats = int64_t{kB} * t.sampler.Length(1, mb) * kC;
    Payload activation, grad;
    double loss = 0;
    ASSERT_THAT(t.work->Forward(0, mb, nullptr, &activation, &loss), IsOk());
    EXPECT_EQ(static_cast<int64_t>(activation.size()), floats) << "mb " << mb;
    ASSERT_THAT(t.work->Forward(1, mb, &activation, nullptr, &loss), IsOk());
    ASSERT_THAT(t.work->Backward(1, mb, nullptr, &grad), IsOk());
    EXPECT_EQ(static_cast<int64_t>(grad.size()), floats) << "mb " << mb;
    ASSERT_THAT(t.work->Backward(0, mb, &grad, nullptr), IsOk());
  }
}

TEST(ModelStageWorkTest, AnActivationOfAnotherLengthIsRefusedNamingBothLengths) {
  TwoChunks t;
  t.work->BeginStep(1, 4);
  Payload activation;
  double loss = 0;
  ASSERT_THAT(t.work->Forward(0, 0, nullptr, &activation, &loss), IsOk());
  const int sent = t.sampler.Length(1, 0);
  const int mb = OtherLengthMicrobatch(t.sampler, 1, sent);
  ASSERT_GE(mb, 0) << "every microbatch of step 1 has length " << sent;
  // Microbatch 0's activation arriving as microbatch mb's: whole tokens, the wrong count.
  EXPECT_THAT(
      t.work->Forward(1, mb, &activation, nullptr, &loss),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr(absl::StrCat("activation for F c1 mb", mb, " of step 1: ")),
                     HasSubstr(absl::StrCat(sent, " tokens of B x d_model = ", kB * kC)),
                     HasSubstr(absl::StrCat("(T_m = ", t.sampler.Length(1, mb), " tokens")))));
  Payload torn(activation.begin(), activation.end() - 1);  // not whole tokens
  EXPECT_THAT(t.work->Forward(1, 0, &torn, nullptr, &loss),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not whole tokens")));
}

TEST(ModelStageWorkTest, AGradientOfAnotherLengthIsRefused) {
  TwoChunks t;
  t.work->BeginStep(1, 4);
  Payload activation, grad;
  double loss = 0;
  ASSERT_THAT(t.work->Forward(0, 0, nullptr, &activation, &loss), IsOk());
  grad.assign(activation.size() + kB * kC, 0.0f);  // one token too many
  EXPECT_THAT(
      t.work->BackwardInput(0, 0, &grad, nullptr),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("gradient for I c0 mb0 of step 1")));
  grad.resize(activation.size());
  Payload none;
  EXPECT_THAT(t.work->BackwardInput(0, 0, &grad, &none), IsOk());
}

}  // namespace
}  // namespace stagehand::runtime
