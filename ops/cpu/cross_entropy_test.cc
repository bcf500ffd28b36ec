// Tests for the CPU softmax + cross-entropy: the B call against finite differences, ln V on
// uniform logits, in-place forms, accumulation, float vs double, determinism. (No W call.)
#include "ops/cpu/cross_entropy.h"

#include <cmath>
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "ops/cpu/test_util.h"

namespace stagehand::ops {
namespace {

using testing::Cast;
using testing::Dot;
using testing::FiniteDifferenceGradient;
using testing::MaxRelativeError;
using testing::RandomTokens;
using testing::RandomVector;

// Letters: N rows, V vocabulary.
constexpr int N = 7;
constexpr int V = 11;
constexpr double kTolerance = 1e-6;

struct CrossEntropyCase {
  std::vector<double> logits = RandomVector(N * V, 1, -3.0, 3.0);  // (N, V)
  std::vector<int32_t> targets = RandomTokens(N, V, 2);            // (N)
  std::vector<double> dlosses = RandomVector(N, 3);                // (N) loss = <dlosses, losses>
  std::vector<double> probs = std::vector<double>(N * V);          // (N, V)
  std::vector<double> losses = std::vector<double>(N);             // (N)

  double Loss() {
    SoftmaxCrossEntropyForward(losses.data(), probs.data(), logits.data(), targets.data(), N, V);
    return Dot(dlosses, losses);
  }
};

TEST(CrossEntropyTest, UniformLogitsGiveLogV) {
  const std::vector<double> logits(N * V, 0.37);
  const std::vector<int32_t> targets = RandomTokens(N, V, 4);
  std::vector<double> probs(N * V), losses(N);
  SoftmaxCrossEntropyForward(losses.data(), probs.data(), logits.data(), targets.data(), N, V);
  for (double loss : losses) EXPECT_NEAR(loss, std::log(static_cast<double>(V)), 1e-15);
  for (double p : probs) EXPECT_NEAR(p, 1.0 / V, 1e-16);

  const std::vector<float> logits_float(N * V, 0.37f);
  std::vector<float> probs_float(N * V), losses_float(N);
  SoftmaxCrossEntropyForward(losses_float.data(), probs_float.data(), logits_float.data(),
                             targets.data(), N, V);
  for (float loss : losses_float) EXPECT_NEAR(loss, std::log(static_cast<double>(V)), 1e-6);
}

TEST(CrossEntropyTest, ProbabilitiesSumToOneAndLossIsMinusLogProbability) {
  CrossEntropyCase c;
  c.Loss();
  for (int n = 0; n < N; ++n) {
    double sum = 0.0;
    for (int v = 0; v < V; ++v) sum += c.probs[n * V + v];
    EXPECT_NEAR(sum, 1.0, 1e-15) << n;
    EXPECT_NEAR(c.losses[n], -std::log(c.probs[n * V + c.targets[n]]), 1e-14) << n;
  }
}

TEST(CrossEntropyTest, ForwardInPlaceMatchesOutOfPlace) {
  CrossEntropyCase c;
  c.Loss();
  auto in_place = c.logits;
  std::vector<double> losses(N);
  SoftmaxCrossEntropyForward(losses.data(), in_place.data(), in_place.data(), c.targets.data(), N,
                             V);
  EXPECT_EQ(in_place, c.probs);
  EXPECT_EQ(losses, c.losses);
}

TEST(CrossEntropyTest, BackwardInputMatchesFiniteDifferences) {
  CrossEntropyCase c;
  c.Loss();
  std::vector<double> dlogits(N * V, 0.0);
  SoftmaxCrossEntropyBackwardInput(dlogits.data(), c.probs.data(), c.targets.data(),
                                   c.dlosses.data(), N, V);
  const auto expected = FiniteDifferenceGradient([&] { return c.Loss(); }, &c.logits);
  EXPECT_LT(MaxRelativeError(dlogits, expected), kTolerance);
}

TEST(CrossEntropyTest, BackwardAccumulatesIntoSeparateBuffer) {
  CrossEntropyCase c;
  c.Loss();
  std::vector<double> dlogits(N * V, 0.0);
  SoftmaxCrossEntropyBackwardInput(dlogits.data(), c.probs.data(), c.targets.data(),
                                   c.dlosses.data(), N, V);
  const auto once = dlogits;
  SoftmaxCrossEntropyBackwardInput(dlogits.data(), c.probs.data(), c.targets.data(),
                                   c.dlosses.data(), N, V);
  for (int i = 0; i < N * V; ++i) EXPECT_EQ(dlogits[i], 2 * once[i]) << i;
}

TEST(CrossEntropyTest, BackwardAliasingProbsOverwrites) {
  CrossEntropyCase c;
  c.Loss();
  std::vector<double> separate(N * V, 0.0);
  SoftmaxCrossEntropyBackwardInput(separate.data(), c.probs.data(), c.targets.data(),
                                   c.dlosses.data(), N, V);
  auto in_place = c.probs;
  SoftmaxCrossEntropyBackwardInput(in_place.data(), in_place.data(), c.targets.data(),
                                   c.dlosses.data(), N, V);
  EXPECT_EQ(in_place, separate);
}

TEST(CrossEntropyTest, FloatForwardMatchesDouble) {
  CrossEntropyCase c;
  c.Loss();
  const auto logits = Cast<float>(c.logits);
  std::vector<float> probs(N * V), losses(N);
  SoftmaxCrossEntropyForward(losses.data(), probs.data(), logits.data(), c.targets.data(), N, V);
  EXPECT_LT(testing::MaxAbsoluteDifference(Cast<double>(probs), c.probs), 1e-5);
  EXPECT_LT(testing::MaxAbsoluteDifference(Cast<double>(losses), c.losses), 1e-5);
}

TEST(CrossEntropyTest, LossStaysFiniteWhenTargetProbabilityUnderflows) {
  const std::vector<float> logits = {0.f, 200.f, -200.f};
  const std::vector<int32_t> targets = {2};
  std::vector<float> probs(3), losses(1);
  SoftmaxCrossEntropyForward(losses.data(), probs.data(), logits.data(), targets.data(), 1, 3);
  EXPECT_EQ(probs[2], 0.f);
  EXPECT_NEAR(losses[0], 400.f, 1e-3);
}

std::vector<std::vector<float>> RunFloatCrossEntropy() {
  constexpr int kN = 64, kV = 1001;
  const auto logits = Cast<float>(RandomVector(kN * kV, 11, -5.0, 5.0));
  const auto targets = RandomTokens(kN, kV, 12);
  const auto dlosses = Cast<float>(RandomVector(kN, 13));
  std::vector<float> probs(kN * kV), losses(kN), dlogits(kN * kV, 0.f);
  SoftmaxCrossEntropyForward(losses.data(), probs.data(), logits.data(), targets.data(), kN, kV);
  SoftmaxCrossEntropyBackwardInput(dlogits.data(), probs.data(), targets.data(), dlosses.data(), kN,
                                   kV);
  return {probs, losses, dlogits};
}

TEST(CrossEntropyTest, DeterministicAcrossRunsAndThreadCounts) {
  const auto reference = RunFloatCrossEntropy();
  EXPECT_EQ(RunFloatCrossEntropy(), reference);
  for (int threads : {1, 2, 3}) {
    testing::WithOmpThreads(threads,
                            [&] { EXPECT_EQ(RunFloatCrossEntropy(), reference) << threads; });
  }
}

}  // namespace
}  // namespace stagehand::ops
