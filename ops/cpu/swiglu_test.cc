// Tests for the CPU SwiGLU: forward against its definition, I against finite differences in
// double on odd shapes, accumulation, float vs double.
#include "ops/cpu/swiglu.h"

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

constexpr int N = 3;
constexpr int H = 7;

TEST(SwiGluTest, ForwardIsSiluOfGateTimesUp) {
  const auto inp = RandomVector(N * 2 * H, 1, -3.0, 3.0);
  std::vector<double> out(N * H);
  SwiGluForward(out.data(), inp.data(), N, H);
  for (int n = 0; n < N; ++n) {
    for (int i = 0; i < H; ++i) {
      const double g = inp[n * 2 * H + i], u = inp[n * 2 * H + H + i];
      EXPECT_NEAR(out[n * H + i], g / (1.0 + std::exp(-g)) * u, 1e-15);
    }
  }
}

TEST(SwiGluTest, BackwardInputMatchesFiniteDifferencesAndAccumulates) {
  auto inp = RandomVector(N * 2 * H, 2, -3.0, 3.0);
  const auto probe = RandomVector(N * H, 3);
  std::vector<double> out(N * H);
  const auto loss = [&] {
    SwiGluForward(out.data(), inp.data(), N, H);
    return Dot(probe, out);
  };
  std::vector<double> dinp(N * 2 * H, 0.0);
  SwiGluBackwardInput(dinp.data(), inp.data(), probe.data(), N, H);
  EXPECT_LT(MaxRelativeError(dinp, FiniteDifferenceGradient(loss, &inp)), 1e-8);
  auto twice = dinp;
  SwiGluBackwardInput(twice.data(), inp.data(), probe.data(), N, H);
  for (size_t i = 0; i < dinp.size(); ++i) EXPECT_EQ(twice[i], 2 * dinp[i]);
}

TEST(SwiGluTest, FloatMatchesDouble) {
  const auto inp = RandomVector(N * 2 * H, 4, -3.0, 3.0);
  std::vector<double> out(N * H);
  SwiGluForward(out.data(), inp.data(), N, H);
  const auto inp_f = Cast<float>(inp);
  std::vector<float> out_f(N * H);
  SwiGluForward(out_f.data(), inp_f.data(), N, H);
  EXPECT_LT(testing::MaxAbsoluteDifference(Cast<double>(out_f), out), 1e-5);
}

}  // namespace
}  // namespace stagehand::ops
