// Tests for the CPU layernorm: I and W against finite differences, fused == I + W, accumulation,
// float vs double, determinism across runs and thread counts. Not a test of RMSNorm.
#include "ops/cpu/layernorm.h"

#include <vector>

#include "gtest/gtest.h"
#include "ops/cpu/test_util.h"

namespace stagehand::ops {
namespace {

using testing::Cast;
using testing::Dot;
using testing::FiniteDifferenceGradient;
using testing::MaxRelativeError;
using testing::RandomVector;

// Letters: N rows, C channels.
constexpr int N = 7;
constexpr int C = 5;
constexpr double kTolerance = 1e-6;

struct LayerNormCase {
  std::vector<double> inp = RandomVector(N * C, 1);           // (N, C)
  std::vector<double> weight = RandomVector(C, 2, 0.5, 1.5);  // (C)
  std::vector<double> bias = RandomVector(C, 3);              // (C)
  std::vector<double> probe = RandomVector(N * C, 4);         // (N, C) loss = <probe, out>
  std::vector<double> out = std::vector<double>(N * C);       // (N, C)
  std::vector<double> mean = std::vector<double>(N);          // (N)
  std::vector<double> rstd = std::vector<double>(N);          // (N)

  double Loss() {
    LayerNormForward(out.data(), mean.data(), rstd.data(), inp.data(), weight.data(), bias.data(),
                     N, C);
    return Dot(probe, out);
  }
};

TEST(LayerNormTest, ForwardNormalisesEachRow) {
  LayerNormCase c;
  const std::vector<double> ones(C, 1.0), zeros(C, 0.0);
  LayerNormForward(c.out.data(), c.mean.data(), c.rstd.data(), c.inp.data(), ones.data(),
                   zeros.data(), N, C);
  for (int n = 0; n < N; ++n) {
    double sum = 0.0, sum_squares = 0.0;
    for (int i = 0; i < C; ++i) {
      sum += c.out[n * C + i];
      sum_squares += c.out[n * C + i] * c.out[n * C + i];
    }
    const double variance_with_eps = 1.0 / (c.rstd[n] * c.rstd[n]);
    EXPECT_NEAR(sum / C, 0.0, 1e-12) << n;
    EXPECT_NEAR(sum_squares / C, 1.0 - 1e-5 / variance_with_eps, 1e-12) << n;
  }
}

TEST(LayerNormTest, BackwardInputMatchesFiniteDifferences) {
  LayerNormCase c;
  c.Loss();  // saves mean and rstd at the unperturbed input
  std::vector<double> dinp(N * C, 0.0);
  LayerNormBackwardInput(dinp.data(), c.probe.data(), c.inp.data(), c.weight.data(), c.mean.data(),
                         c.rstd.data(), N, C);
  const auto expected = FiniteDifferenceGradient([&] { return c.Loss(); }, &c.inp);
  EXPECT_LT(MaxRelativeError(dinp, expected), kTolerance);
}

TEST(LayerNormTest, BackwardWeightsMatchesFiniteDifferences) {
  LayerNormCase c;
  c.Loss();
  std::vector<double> dweight(C, 0.0), dbias(C, 0.0);
  LayerNormBackwardWeights(dweight.data(), dbias.data(), c.probe.data(), c.inp.data(),
                           c.mean.data(), c.rstd.data(), N, C);
  const auto expected_dweight = FiniteDifferenceGradient([&] { return c.Loss(); }, &c.weight);
  const auto expected_dbias = FiniteDifferenceGradient([&] { return c.Loss(); }, &c.bias);
  EXPECT_LT(MaxRelativeError(dweight, expected_dweight), kTolerance);
  EXPECT_LT(MaxRelativeError(dbias, expected_dbias), kTolerance);
}

TEST(LayerNormTest, FusedBackwardEqualsInputThenWeights) {
  LayerNormCase c;
  c.Loss();
  const auto start_dinp = RandomVector(N * C, 5);
  const auto start_dweight = RandomVector(C, 6);
  const auto start_dbias = RandomVector(C, 7);
  auto dinp_split = start_dinp, dweight_split = start_dweight, dbias_split = start_dbias;
  LayerNormBackwardInput(dinp_split.data(), c.probe.data(), c.inp.data(), c.weight.data(),
                         c.mean.data(), c.rstd.data(), N, C);
  LayerNormBackwardWeights(dweight_split.data(), dbias_split.data(), c.probe.data(), c.inp.data(),
                           c.mean.data(), c.rstd.data(), N, C);
  auto dinp = start_dinp, dweight = start_dweight, dbias = start_dbias;
  LayerNormBackward(dinp.data(), dweight.data(), dbias.data(), c.probe.data(), c.inp.data(),
                    c.weight.data(), c.mean.data(), c.rstd.data(), N, C);
  EXPECT_EQ(dinp, dinp_split);
  EXPECT_EQ(dweight, dweight_split);
  EXPECT_EQ(dbias, dbias_split);
}

TEST(LayerNormTest, BackwardAccumulates) {
  LayerNormCase c;
  c.Loss();
  std::vector<double> dinp(N * C, 0.0), dweight(C, 0.0), dbias(C, 0.0);
  LayerNormBackward(dinp.data(), dweight.data(), dbias.data(), c.probe.data(), c.inp.data(),
                    c.weight.data(), c.mean.data(), c.rstd.data(), N, C);
  const auto once_dinp = dinp, once_dweight = dweight, once_dbias = dbias;
  LayerNormBackward(dinp.data(), dweight.data(), dbias.data(), c.probe.data(), c.inp.data(),
                    c.weight.data(), c.mean.data(), c.rstd.data(), N, C);
  for (int i = 0; i < N * C; ++i) EXPECT_EQ(dinp[i], 2 * once_dinp[i]) << i;
  for (int i = 0; i < C; ++i) EXPECT_EQ(dweight[i], 2 * once_dweight[i]) << i;
  for (int i = 0; i < C; ++i) EXPECT_EQ(dbias[i], 2 * once_dbias[i]) << i;
}

TEST(LayerNormTest, FloatForwardMatchesDouble) {
  LayerNormCase c;
  c.Loss();
  const auto inp = Cast<float>(c.inp), weight = Cast<float>(c.weight), bias = Cast<float>(c.bias);
  std::vector<float> out(N * C), mean(N), rstd(N);
  LayerNormForward(out.data(), mean.data(), rstd.data(), inp.data(), weight.data(), bias.data(), N,
                   C);
  EXPECT_LT(testing::MaxAbsoluteDifference(Cast<double>(out), c.out), 1e-5);
  EXPECT_LT(testing::MaxAbsoluteDifference(Cast<double>(mean), c.mean), 1e-5);
  EXPECT_LT(MaxRelativeError(Cast<double>(rstd), c.rstd), 1e-5);
}

// Enough rows and channel blocks that every parallel loop is split among the threads.
std::vector<std::vector<float>> RunFloatLayerNorm() {
  constexpr int kN = 64, kC = 300;
  const auto inp = Cast<float>(RandomVector(kN * kC, 11));
  const auto weight = Cast<float>(RandomVector(kC, 12));
  const auto bias = Cast<float>(RandomVector(kC, 13));
  const auto dout = Cast<float>(RandomVector(kN * kC, 14));
  std::vector<float> out(kN * kC), mean(kN), rstd(kN);
  std::vector<float> dinp(kN * kC, 0.f), dweight(kC, 0.f), dbias(kC, 0.f);
  LayerNormForward(out.data(), mean.data(), rstd.data(), inp.data(), weight.data(), bias.data(), kN,
                   kC);
  LayerNormBackward(dinp.data(), dweight.data(), dbias.data(), dout.data(), inp.data(),
                    weight.data(), mean.data(), rstd.data(), kN, kC);
  return {out, mean, rstd, dinp, dweight, dbias};
}

TEST(LayerNormTest, DeterministicAcrossRunsAndThreadCounts) {
  const auto reference = RunFloatLayerNorm();
  EXPECT_EQ(RunFloatLayerNorm(), reference);
  for (int threads : {1, 2, 3}) {
    testing::WithOmpThreads(threads, [&] { EXPECT_EQ(RunFloatLayerNorm(), reference) << threads; });
  }
}

}  // namespace
}  // namespace stagehand::ops
