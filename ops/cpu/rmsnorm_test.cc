// Tests for the CPU RMSNorm: I and W against finite differences in double on odd shapes,
// fused == I + W, accumulation, float vs double, determinism across thread counts.
#include "ops/cpu/rmsnorm.h"

#include <cmath>
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

constexpr int N = 7;
constexpr int C = 5;
constexpr double kEps = 1e-6;
constexpr double kTolerance = 1e-6;

struct RmsNormCase {
  std::vector<double> inp = RandomVector(N * C, 1);
  std::vector<double> weight = RandomVector(C, 2, 0.5, 1.5);
  std::vector<double> probe = RandomVector(N * C, 4);
  std::vector<double> out = std::vector<double>(N * C);
  std::vector<double> rstd = std::vector<double>(N);

  double Loss() {
    RmsNormForward(out.data(), rstd.data(), inp.data(), weight.data(), N, C, kEps);
    return Dot(probe, out);
  }
};

TEST(RmsNormTest, ForwardGivesUnitRootMeanSquare) {
  RmsNormCase c;
  const std::vector<double> ones(C, 1.0);
  RmsNormForward(c.out.data(), c.rstd.data(), c.inp.data(), ones.data(), N, C, 0.0);
  for (int n = 0; n < N; ++n) {
    double sum_squares = 0.0;
    for (int i = 0; i < C; ++i) sum_squares += c.out[n * C + i] * c.out[n * C + i];
    EXPECT_NEAR(sum_squares / C, 1.0, 1e-12) << n;
  }
}

TEST(RmsNormTest, BackwardInputAndWeightsMatchFiniteDifferences) {
  RmsNormCase c;
  c.Loss();
  std::vector<double> dinp(N * C, 0.0), dweight(C, 0.0);
  RmsNormBackwardInput(dinp.data(), c.probe.data(), c.inp.data(), c.weight.data(), c.rstd.data(), N,
                       C);
  RmsNormBackwardWeights(dweight.data(), c.probe.data(), c.inp.data(), c.rstd.data(), N, C);
  EXPECT_LT(MaxRelativeError(dinp, FiniteDifferenceGradient([&] { return c.Loss(); }, &c.inp)),
            kTolerance);
  EXPECT_LT(
      MaxRelativeError(dweight, FiniteDifferenceGradient([&] { return c.Loss(); }, &c.weight)),
      kTolerance);
}

TEST(RmsNormTest, FusedBackwardEqualsInputThenWeightsAndAccumulates) {
  RmsNormCase c;
  c.Loss();
  auto dinp_split = RandomVector(N * C, 5), dweight_split = RandomVector(C, 6);
  auto dinp = dinp_split, dweight = dweight_split;
  RmsNormBackwardInput(dinp_split.data(), c.probe.data(), c.inp.data(), c.weight.data(),
                       c.rstd.data(), N, C);
  RmsNormBackwardWeights(dweight_split.data(), c.probe.data(), c.inp.data(), c.rstd.data(), N, C);
  RmsNormBackward(dinp.data(), dweight.data(), c.probe.data(), c.inp.data(), c.weight.data(),
                  c.rstd.data(), N, C);
  EXPECT_EQ(dinp, dinp_split);
  EXPECT_EQ(dweight, dweight_split);
  std::vector<double> once(C, 0.0), twice(C, 0.0);
  RmsNormBackwardWeights(once.data(), c.probe.data(), c.inp.data(), c.rstd.data(), N, C);
  RmsNormBackwardWeights(twice.data(), c.probe.data(), c.inp.data(), c.rstd.data(), N, C);
  RmsNormBackwardWeights(twice.data(), c.probe.data(), c.inp.data(), c.rstd.data(), N, C);
  for (int i = 0; i < C; ++i) EXPECT_EQ(twice[i], 2 * once[i]);
}

TEST(RmsNormTest, FloatMatchesDoubleAndIsDeterministicAcrossThreads) {
  RmsNormCase c;
  c.Loss();
  const auto run = [&] {
    constexpr int kN = 64, kC = 300;
    const auto inp = Cast<float>(RandomVector(kN * kC, 11));
    const auto weight = Cast<float>(RandomVector(kC, 12));
    const auto dout = Cast<float>(RandomVector(kN * kC, 14));
    std::vector<float> out(kN * kC), rstd(kN), dinp(kN * kC, 0.f), dweight(kC, 0.f);
    RmsNormForward(out.data(), rstd.data(), inp.data(), weight.data(), kN, kC, kEps);
    RmsNormBackward(dinp.data(), dweight.data(), dout.data(), inp.data(), weight.data(),
                    rstd.data(), kN, kC);
    return std::vector<std::vector<float>>{out, rstd, dinp, dweight};
  };
  const auto reference = run();
  for (int threads : {1, 2, 3}) {
    testing::WithOmpThreads(threads, [&] { EXPECT_EQ(run(), reference) << threads; });
  }
  const auto inp = Cast<float>(c.inp), weight = Cast<float>(c.weight);
  std::vector<float> out(N * C), rstd(N);
  RmsNormForward(out.data(), rstd.data(), inp.data(), weight.data(), N, C, kEps);
  EXPECT_LT(testing::MaxAbsoluteDifference(Cast<double>(out), c.out), 1e-5);
}

}  // namespace
}  // namespace stagehand::ops
