// Tests for the CPU GELU: the B call against finite differences, accumulation, known values,
// float vs double, determinism across runs and thread counts. (No weights, so no W call.)
#include "ops/cpu/gelu.h"

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

constexpr int kSize = 13;
constexpr double kTolerance = 1e-6;

struct GeluCase {
  std::vector<double> inp = RandomVector(kSize, 1, -4.0, 4.0);  // (n)
  std::vector<double> probe = RandomVector(kSize, 2);           // (n) loss = <probe, out>

  double Loss() {
    std::vector<double> out(kSize);
    GeluForward(out.data(), inp.data(), kSize);
    return Dot(probe, out);
  }
};

TEST(GeluTest, ForwardMatchesTheTanhFormula) {
  const std::vector<double> inp = {-3.0, -1.0, 0.0, 0.5, 2.0};
  std::vector<double> out(inp.size());
  GeluForward(out.data(), inp.data(), static_cast<int64_t>(inp.size()));
  for (size_t i = 0; i < inp.size(); ++i) {
    const double x = inp[i];
    const double expected =
        0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    EXPECT_NEAR(out[i], expected, 1e-15) << x;
  }
  EXPECT_EQ(out[2], 0.0);
}

TEST(GeluTest, BackwardInputMatchesFiniteDifferences) {
  GeluCase c;
  std::vector<double> dinp(kSize, 0.0);
  GeluBackwardInput(dinp.data(), c.inp.data(), c.probe.data(), kSize);
  const auto expected = FiniteDifferenceGradient([&] { return c.Loss(); }, &c.inp);
  EXPECT_LT(MaxRelativeError(dinp, expected), kTolerance);
}

TEST(GeluTest, BackwardAccumulates) {
  GeluCase c;
  std::vector<double> dinp(kSize, 0.0);
  GeluBackwardInput(dinp.data(), c.inp.data(), c.probe.data(), kSize);
  const auto once = dinp;
  GeluBackwardInput(dinp.data(), c.inp.data(), c.probe.data(), kSize);
  for (int i = 0; i < kSize; ++i) EXPECT_EQ(dinp[i], 2 * once[i]) << i;
}

TEST(GeluTest, FloatForwardMatchesDouble) {
  GeluCase c;
  std::vector<double> out_double(kSize);
  GeluForward(out_double.data(), c.inp.data(), kSize);
  const auto inp = Cast<float>(c.inp);
  std::vector<float> out_float(kSize);
  GeluForward(out_float.data(), inp.data(), kSize);
  EXPECT_LT(testing::MaxAbsoluteDifference(Cast<double>(out_float), out_double), 1e-5);
}

std::vector<std::vector<float>> RunFloatGelu() {
  constexpr int kN = 40009;
  const auto inp = Cast<float>(RandomVector(kN, 11, -4.0, 4.0));
  const auto dout = Cast<float>(RandomVector(kN, 12));
  std::vector<float> out(kN), dinp(kN, 0.f);
  GeluForward(out.data(), inp.data(), kN);
  GeluBackwardInput(dinp.data(), inp.data(), dout.data(), kN);
  return {out, dinp};
}

TEST(GeluTest, DeterministicAcrossRunsAndThreadCounts) {
  const auto reference = RunFloatGelu();
  EXPECT_EQ(RunFloatGelu(), reference);
  for (int threads : {1, 2, 3}) {
    testing::WithOmpThreads(threads, [&] { EXPECT_EQ(RunFloatGelu(), reference) << threads; });
  }
}

}  // namespace
}  // namespace stagehand::ops
