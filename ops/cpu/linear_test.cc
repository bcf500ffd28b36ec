// Tests for the CPU linear op: I and W against finite differences, fused == I + W, accumulation,
// float vs double, determinism across runs and thread counts. Not a BLAS accuracy test.
#include "ops/cpu/linear.h"

#include <cblas.h>

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

// Letters: N rows, C input channels, OC output channels.
constexpr int N = 7;
constexpr int C = 5;
constexpr int OC = 3;
constexpr double kTolerance = 1e-6;

struct LinearCase {
  std::vector<double> inp = RandomVector(N * C, 1);      // (N, C)
  std::vector<double> weight = RandomVector(OC * C, 2);  // (OC, C)
  std::vector<double> bias = RandomVector(OC, 3);        // (OC)
  std::vector<double> probe = RandomVector(N * OC, 4);   // (N, OC) loss = <probe, out>

  double Loss() {
    std::vector<double> out(N * OC);
    LinearForward(out.data(), inp.data(), weight.data(), bias.data(), N, C, OC);
    return Dot(probe, out);
  }
};

TEST(LinearTest, BackwardInputMatchesFiniteDifferences) {
  LinearCase c;
  std::vector<double> dinp(N * C, 0.0);
  LinearBackwardInput(dinp.data(), c.probe.data(), c.weight.data(), N, C, OC);
  const auto expected = FiniteDifferenceGradient([&] { return c.Loss(); }, &c.inp);
  EXPECT_LT(MaxRelativeError(dinp, expected), kTolerance);
}

TEST(LinearTest, BackwardWeightsMatchesFiniteDifferences) {
  LinearCase c;
  std::vector<double> dweight(OC * C, 0.0), dbias(OC, 0.0);
  LinearBackwardWeights(dweight.data(), dbias.data(), c.probe.data(), c.inp.data(), N, C, OC);
  const auto expected_dweight = FiniteDifferenceGradient([&] { return c.Loss(); }, &c.weight);
  const auto expected_dbias = FiniteDifferenceGradient([&] { return c.Loss(); }, &c.bias);
  EXPECT_LT(MaxRelativeError(dweight, expected_dweight), kTolerance);
  EXPECT_LT(MaxRelativeError(dbias, expected_dbias), kTolerance);
}

TEST(LinearTest, ForwardWithoutBiasOverwritesOutput) {
  LinearCase c;
  std::vector<double> with_zero_bias(N * OC), without_bias(N * OC, 123.0);
  const std::vector<double> zeros(OC, 0.0);
  LinearForward(with_zero_bias.data(), c.inp.data(), c.weight.data(), zeros.data(), N, C, OC);
  LinearForward(without_bias.data(), c.inp.data(), c.weight.data(),
                static_cast<const double*>(nullptr), N, C, OC);
  EXPECT_EQ(with_zero_bias, without_bias);
}

TEST(LinearTest, FusedBackwardEqualsInputThenWeights) {
  LinearCase c;
  const auto start_dinp = RandomVector(N * C, 5);
  const auto start_dweight = RandomVector(OC * C, 6);
  const auto start_dbias = RandomVector(OC, 7);
  auto dinp_split = start_dinp, dweight_split = start_dweight, dbias_split = start_dbias;
  LinearBackwardInput(dinp_split.data(), c.probe.data(), c.weight.data(), N, C, OC);
  LinearBackwardWeights(dweight_split.data(), dbias_split.data(), c.probe.data(), c.inp.data(), N,
                        C, OC);
  auto dinp = start_dinp, dweight = start_dweight, dbias = start_dbias;
  LinearBackward(dinp.data(), dweight.data(), dbias.data(), c.probe.data(), c.inp.data(),
                 c.weight.data(), N, C, OC);
  EXPECT_EQ(dinp, dinp_split);
  EXPECT_EQ(dweight, dweight_split);
  EXPECT_EQ(dbias, dbias_split);
}

TEST(LinearTest, BackwardAccumulates) {
  LinearCase c;
  std::vector<double> once_dinp(N * C, 0.0), once_dweight(OC * C, 0.0), once_dbias(OC, 0.0);
  LinearBackward(once_dinp.data(), once_dweight.data(), once_dbias.data(), c.probe.data(),
                 c.inp.data(), c.weight.data(), N, C, OC);
  auto twice_dinp = once_dinp, twice_dweight = once_dweight, twice_dbias = once_dbias;
  LinearBackward(twice_dinp.data(), twice_dweight.data(), twice_dbias.data(), c.probe.data(),
                 c.inp.data(), c.weight.data(), N, C, OC);
  // BLAS may add its partial products into the output one k-block at a time, so the second
  // call doubles the first only up to rounding.
  EXPECT_LT(MaxRelativeError(twice_dinp, testing::Scaled(once_dinp, 2.0)), 1e-14);
  EXPECT_LT(MaxRelativeError(twice_dweight, testing::Scaled(once_dweight, 2.0)), 1e-14);
  EXPECT_LT(MaxRelativeError(twice_dbias, testing::Scaled(once_dbias, 2.0)), 1e-14);
}

TEST(LinearTest, FloatForwardMatchesDouble) {
  LinearCase c;
  std::vector<double> out_double(N * OC);
  LinearForward(out_double.data(), c.inp.data(), c.weight.data(), c.bias.data(), N, C, OC);
  const auto inp = Cast<float>(c.inp), weight = Cast<float>(c.weight), bias = Cast<float>(c.bias);
  std::vector<float> out_float(N * OC);
  LinearForward(out_float.data(), inp.data(), weight.data(), bias.data(), N, C, OC);
  EXPECT_LT(testing::MaxAbsoluteDifference(Cast<double>(out_float), out_double), 1e-5);
}

// Several GEMM tiles and dbias blocks per call, each tile above the size at which OpenBLAS
// would split it among its own threads if it were allowed to.
std::vector<std::vector<float>> RunFloatLinear() {
  constexpr int kN = 300, kC = 40, kOC = 260;
  const auto inp = Cast<float>(RandomVector(kN * kC, 11));
  const auto weight = Cast<float>(RandomVector(kOC * kC, 12));
  const auto bias = Cast<float>(RandomVector(kOC, 13));
  const auto dout = Cast<float>(RandomVector(kN * kOC, 14));
  std::vector<float> out(kN * kOC), dinp(kN * kC, 0.f), dweight(kOC * kC, 0.f), dbias(kOC, 0.f);
  LinearForward(out.data(), inp.data(), weight.data(), bias.data(), kN, kC, kOC);
  LinearBackward(dinp.data(), dweight.data(), dbias.data(), dout.data(), inp.data(), weight.data(),
                 kN, kC, kOC);
  return {out, dinp, dweight, dbias};
}

TEST(LinearTest, DeterministicAcrossRunsAndThreadCounts) {
  const auto reference = RunFloatLinear();
  EXPECT_EQ(RunFloatLinear(), reference);
  const int blas_threads = openblas_get_num_threads();
  for (int threads : {1, 2, 3}) {
    openblas_set_num_threads(threads);
    testing::WithOmpThreads(threads, [&] { EXPECT_EQ(RunFloatLinear(), reference) << threads; });
  }
  openblas_set_num_threads(blas_threads);
}

}  // namespace
}  // namespace stagehand::ops
