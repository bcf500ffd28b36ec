// Tests for the CPU encoder: the W call against finite differences, repeated tokens, accumulation,
// float vs double, determinism across runs and thread counts. (There is no B call.)
#include "ops/cpu/encoder.h"

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

// Letters: B batch, T time, C channels, V vocabulary; maxT >= T rows of wpe.
constexpr int B = 2;
constexpr int T = 5;
constexpr int C = 7;
constexpr int V = 11;
constexpr int kMaxT = 6;
constexpr double kTolerance = 1e-6;

struct EncoderCase {
  // Token 3 appears more than once, so dwte must sum several rows of dout into one row.
  std::vector<int32_t> tokens = {3, 0, 3, 10, 3, 7, 7, 1, 2, 3};  // (B, T)
  std::vector<double> wte = RandomVector(V * C, 1);               // (V, C)
  std::vector<double> wpe = RandomVector(kMaxT * C, 2);           // (maxT, C)
  std::vector<double> probe = RandomVector(B * T * C, 3);         // (B, T, C)

  double Loss() {
    std::vector<double> out(B * T * C);
    EncoderForward(out.data(), tokens.data(), wte.data(), wpe.data(), B, T, C);
    return Dot(probe, out);
  }
};

TEST(EncoderTest, ForwardAddsTokenAndPositionRows) {
  EncoderCase c;
  std::vector<double> out(B * T * C);
  EncoderForward(out.data(), c.tokens.data(), c.wte.data(), c.wpe.data(), B, T, C);
  for (int b = 0; b < B; ++b) {
    for (int t = 0; t < T; ++t) {
      for (int i = 0; i < C; ++i) {
        EXPECT_EQ(out[(b * T + t) * C + i], c.wte[c.tokens[b * T + t] * C + i] + c.wpe[t * C + i]);
      }
    }
  }
}

TEST(EncoderTest, BackwardWeightsMatchesFiniteDifferences) {
  EncoderCase c;
  std::vector<double> dwte(V * C, 0.0), dwpe(kMaxT * C, 0.0);
  EncoderBackwardWeights(dwte.data(), dwpe.data(), c.probe.data(), c.tokens.data(), B, T, C);
  const auto expected_dwte = FiniteDifferenceGradient([&] { return c.Loss(); }, &c.wte);
  const auto expected_dwpe = FiniteDifferenceGradient([&] { return c.Loss(); }, &c.wpe);
  EXPECT_LT(MaxRelativeError(dwte, expected_dwte), kTolerance);
  EXPECT_LT(MaxRelativeError(dwpe, expected_dwpe), kTolerance);
  // Rows of tokens that never occur, and positions past T, get exactly nothing.
  for (int i = 0; i < C; ++i) EXPECT_EQ(dwte[4 * C + i], 0.0);
  for (int i = 0; i < C; ++i) EXPECT_EQ(dwpe[T * C + i], 0.0);
}

TEST(EncoderTest, BackwardAccumulates) {
  EncoderCase c;
  std::vector<double> dwte(V * C, 0.0), dwpe(kMaxT * C, 0.0);
  EncoderBackwardWeights(dwte.data(), dwpe.data(), c.probe.data(), c.tokens.data(), B, T, C);
  const auto once_dwte = dwte, once_dwpe = dwpe;
  EncoderBackwardWeights(dwte.data(), dwpe.data(), c.probe.data(), c.tokens.data(), B, T, C);
  // Each row of dout is added on its own, so a sum of several rows doubles only up to rounding.
  EXPECT_LT(MaxRelativeError(dwte, testing::Scaled(once_dwte, 2.0)), 1e-15);
  EXPECT_LT(MaxRelativeError(dwpe, testing::Scaled(once_dwpe, 2.0)), 1e-15);
}

TEST(EncoderTest, FloatForwardMatchesDouble) {
  EncoderCase c;
  std::vector<double> out_double(B * T * C);
  EncoderForward(out_double.data(), c.tokens.data(), c.wte.data(), c.wpe.data(), B, T, C);
  const auto wte = Cast<float>(c.wte), wpe = Cast<float>(c.wpe);
  std::vector<float> out_float(B * T * C);
  EncoderForward(out_float.data(), c.tokens.data(), wte.data(), wpe.data(), B, T, C);
  EXPECT_LT(testing::MaxAbsoluteDifference(Cast<double>(out_float), out_double), 1e-5);
}

// Several channel blocks, and a small vocabulary so that tokens repeat across threads' rows.
std::vector<std::vector<float>> RunFloatEncoder() {
  constexpr int kB = 4, kT = 32, kC = 200, kV = 13;
  const auto tokens = RandomTokens(kB * kT, kV, 11);
  const auto wte = Cast<float>(RandomVector(kV * kC, 12));
  const auto wpe = Cast<float>(RandomVector(kT * kC, 13));
  const auto dout = Cast<float>(RandomVector(kB * kT * kC, 14));
  std::vector<float> out(kB * kT * kC), dwte(kV * kC, 0.f), dwpe(kT * kC, 0.f);
  EncoderForward(out.data(), tokens.data(), wte.data(), wpe.data(), kB, kT, kC);
  EncoderBackwardWeights(dwte.data(), dwpe.data(), dout.data(), tokens.data(), kB, kT, kC);
  return {out, dwte, dwpe};
}

TEST(EncoderTest, DeterministicAcrossRunsAndThreadCounts) {
  const auto reference = RunFloatEncoder();
  EXPECT_EQ(RunFloatEncoder(), reference);
  for (int threads : {1, 2, 3}) {
    testing::WithOmpThreads(threads, [&] { EXPECT_EQ(RunFloatEncoder(), reference) << threads; });
  }
}

}  // namespace
}  // namespace stagehand::ops
