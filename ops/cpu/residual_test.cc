// Tests for the CPU residual add: the B call against finite differences for both inputs,
// aliased gradients, accumulation, float vs double, determinism. (No weights, so no W call.)
#include "ops/cpu/residual.h"

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

constexpr int kSize = 11;
constexpr double kTolerance = 1e-6;

struct ResidualCase {
  std::vector<double> a = RandomVector(kSize, 1);      // (n)
  std::vector<double> b = RandomVector(kSize, 2);      // (n)
  std::vector<double> probe = RandomVector(kSize, 3);  // (n) loss = <probe, out>

  double Loss() {
    std::vector<double> out(kSize);
    ResidualForward(out.data(), a.data(), b.data(), kSize);
    return Dot(probe, out);
  }
};

TEST(ResidualTest, BackwardInputMatchesFiniteDifferences) {
  ResidualCase c;
  std::vector<double> da(kSize, 0.0), db(kSize, 0.0);
  ResidualBackwardInput(da.data(), db.data(), c.probe.data(), kSize);
  const auto expected_da = FiniteDifferenceGradient([&] { return c.Loss(); }, &c.a);
  const auto expected_db = FiniteDifferenceGradient([&] { return c.Loss(); }, &c.b);
  EXPECT_LT(MaxRelativeError(da, expected_da), kTolerance);
  EXPECT_LT(MaxRelativeError(db, expected_db), kTolerance);
}

TEST(ResidualTest, BackwardAccumulates) {
  ResidualCase c;
  const auto start = RandomVector(kSize, 4);
  auto da = start, db = start;
  ResidualBackwardInput(da.data(), db.data(), c.probe.data(), kSize);
  for (int i = 0; i < kSize; ++i) {
    EXPECT_EQ(da[i], start[i] + c.probe[i]) << i;
    EXPECT_EQ(db[i], start[i] + c.probe[i]) << i;
  }
}

TEST(ResidualTest, AliasedGradientsAddTwice) {
  ResidualCase c;
  const auto start = RandomVector(kSize, 4);
  auto d = start;
  ResidualBackwardInput(d.data(), d.data(), c.probe.data(), kSize);
  for (int i = 0; i < kSize; ++i) EXPECT_EQ(d[i], (start[i] + c.probe[i]) + c.probe[i]) << i;
}

TEST(ResidualTest, FloatForwardMatchesDouble) {
  ResidualCase c;
  std::vector<double> out_double(kSize);
  ResidualForward(out_double.data(), c.a.data(), c.b.data(), kSize);
  const auto a = Cast<float>(c.a), b = Cast<float>(c.b);
  std::vector<float> out_float(kSize);
  ResidualForward(out_float.data(), a.data(), b.data(), kSize);
  EXPECT_LT(testing::MaxAbsoluteDifference(Cast<double>(out_float), out_double), 1e-5);
}

std::vector<std::vector<float>> RunFloatResidual() {
  constexpr int kN = 40009;
  const auto a = Cast<float>(RandomVector(kN, 11));
  const auto b = Cast<float>(RandomVector(kN, 12));
  const auto dout = Cast<float>(RandomVector(kN, 13));
  std::vector<float> out(kN), da(kN, 0.f), db(kN, 0.f);
  ResidualForward(out.data(), a.data(), b.data(), kN);
  ResidualBackwardInput(da.data(), db.data(), dout.data(), kN);
  return {out, da, db};
}

TEST(ResidualTest, DeterministicAcrossRunsAndThreadCounts) {
  const auto reference = RunFloatResidual();
  EXPECT_EQ(RunFloatResidual(), reference);
  for (int threads : {1, 2, 3}) {
    testing::WithOmpThreads(threads, [&] { EXPECT_EQ(RunFloatResidual(), reference) << threads; });
  }
}

}  // namespace
}  // namespace stagehand::ops
