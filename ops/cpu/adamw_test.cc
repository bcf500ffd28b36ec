// Tests for the CPU AdamW: a hand-computed two-step example, weight decay, the clip factor,
// the sum of squares, and bitwise determinism. Not a convergence test.
#include "ops/cpu/adamw.h"

#include <cmath>
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "ops/cpu/test_util.h"

namespace stagehand::ops {
namespace {

using testing::Cast;
using testing::RandomVector;

TEST(AdamWTest, TwoStepsMatchHandComputedValues) {
  AdamWOptions options;
  options.learning_rate = 0.1;
  options.beta1 = 0.9;
  options.beta2 = 0.95;
  options.epsilon = 1e-8;
  options.weight_decay = 0.01;
  std::vector<double> params = {1.0, -0.5};
  std::vector<double> m = {0.0, 0.0}, v = {0.0, 0.0};
  const std::vector<double> grads_step1 = {0.5, -0.2};
  const std::vector<double> grads_step2 = {0.25, 0.1};

  // Parameter 0, step 1: m = 0.1 * 0.5 = 0.05; v = 0.05 * 0.25 = 0.0125; mhat = 0.05 / 0.1 = 0.5;
  // vhat = 0.0125 / 0.05 = 0.25; p = 1 - 0.1 * (0.5 / (0.5 + 1e-8) + 0.01 * 1) = 0.899000002.
  AdamWUpdate(params.data(), grads_step1.data(), m.data(), v.data(), 2, options, 1, 1.0);
  EXPECT_NEAR(m[0], 0.05, 1e-15);
  EXPECT_NEAR(v[0], 0.0125, 1e-15);
  EXPECT_NEAR(params[0], 0.89900000199999996, 1e-14);
  EXPECT_NEAR(m[1], -0.02, 1e-15);
  EXPECT_NEAR(v[1], 0.002, 1e-15);
  EXPECT_NEAR(params[1], -0.39950000499999975, 1e-14);

  // Parameter 0, step 2: m = 0.9 * 0.05 + 0.1 * 0.25 = 0.07; v = 0.95 * 0.0125 + 0.05 * 0.0625
  // = 0.015; mhat = 0.07 / 0.19; vhat = 0.015 / 0.0975; p -= 0.1 * (mhat / (sqrt(vhat) + eps)
  // + 0.01 * p).
  AdamWUpdate(params.data(), grads_step2.data(), m.data(), v.data(), 2, options, 2, 1.0);
  EXPECT_NEAR(m[0], 0.07, 1e-15);
  EXPECT_NEAR(v[0], 0.015, 1e-15);
  EXPECT_NEAR(params[0], 0.80417169756339597, 1e-14);
  EXPECT_NEAR(m[1], -0.008, 1e-15);
  EXPECT_NEAR(v[1], 0.0024, 1e-15);
  EXPECT_NEAR(params[1], -0.37226356189714288, 1e-14);
}

TEST(AdamWTest, WeightDecayShrinksParamsWithoutGradient) {
  AdamWOptions options;
  options.learning_rate = 0.1;
  options.weight_decay = 0.5;
  std::vector<double> params = {2.0, -4.0, 0.0};
  const std::vector<double> grads(3, 0.0);
  std::vector<double> m(3, 0.0), v(3, 0.0);
  AdamWUpdate(params.data(), grads.data(), m.data(), v.data(), 3, options, 1, 1.0);
  // Zero moments give a zero Adam step, leaving p -= lr * wd * p = 0.95 p.
  EXPECT_DOUBLE_EQ(params[0], 1.9);
  EXPECT_DOUBLE_EQ(params[1], -3.8);
  EXPECT_EQ(params[2], 0.0);
}

TEST(AdamWTest, GradScaleActsAsScaledGradients) {
  AdamWOptions options;
  options.weight_decay = 0.1;
  const auto grads = Cast<float>(RandomVector(100, 1));
  std::vector<float> halved(grads);
  for (float& g : halved) g *= 0.5f;
  auto params_scaled = Cast<float>(RandomVector(100, 2));
  auto params_halved = params_scaled;
  std::vector<float> m_scaled(100, 0.f), v_scaled(100, 0.f), m_halved(100, 0.f), v_halved(100, 0.f);
  for (int step = 1; step <= 3; ++step) {
    AdamWUpdate(params_scaled.data(), grads.data(), m_scaled.data(), v_scaled.data(), 100, options,
                step, 0.5);
    AdamWUpdate(params_halved.data(), halved.data(), m_halved.data(), v_halved.data(), 100, options,
                step, 1.0);
  }
  EXPECT_EQ(params_scaled, params_halved);
  EXPECT_EQ(m_scaled, m_halved);
  EXPECT_EQ(v_scaled, v_halved);
}

TEST(AdamWTest, ClipScaleIsMinOfOneAndMaxNormOverNorm) {
  EXPECT_DOUBLE_EQ(ClipScale(10.0, 1.0), 0.1);
  EXPECT_EQ(ClipScale(0.5, 1.0), 1.0);
  EXPECT_EQ(ClipScale(1.0, 1.0), 1.0);
  EXPECT_EQ(ClipScale(0.0, 1.0), 1.0);
  EXPECT_EQ(ClipScale(10.0, 0.0), 1.0);   // disabled
  EXPECT_EQ(ClipScale(10.0, -1.0), 1.0);  // disabled
}

TEST(AdamWTest, SumOfSquaresMatchesPlainSum) {
  const auto x = RandomVector(100003, 3);
  double expected = 0.0;
  for (double value : x) expected += value * value;
  EXPECT_NEAR(SumOfSquares(x.data(), static_cast<int64_t>(x.size())), expected, 1e-9 * expected);
  const std::vector<float> small = {3.f, 4.f};
  EXPECT_EQ(SumOfSquares(small.data(), 2), 25.0);
  EXPECT_EQ(SumOfSquares(small.data(), 0), 0.0);
}

TEST(AdamWTest, FloatUpdateMatchesDouble) {
  AdamWOptions options;
  options.weight_decay = 0.1;
  const auto grads = RandomVector(50, 4);
  auto params = RandomVector(50, 5);
  std::vector<double> m(50, 0.0), v(50, 0.0);
  auto params_float = Cast<float>(params), grads_float = Cast<float>(grads);
  std::vector<float> m_float(50, 0.f), v_float(50, 0.f);
  AdamWUpdate(params.data(), grads.data(), m.data(), v.data(), 50, options, 1, 0.7);
  AdamWUpdate(params_float.data(), grads_float.data(), m_float.data(), v_float.data(), 50, options,
              1, 0.7);
  EXPECT_LT(testing::MaxAbsoluteDifference(Cast<double>(params_float), params), 1e-6);
}

// Several SumOfSquares blocks (of 2^14) and enough parameters to split among threads.
std::vector<double> RunFloatAdamW() {
  constexpr int64_t kN = 100003;
  const auto grads = Cast<float>(RandomVector(kN, 11));
  auto params = Cast<float>(RandomVector(kN, 12));
  std::vector<float> m(kN, 0.f), v(kN, 0.f);
  AdamWOptions options;
  options.weight_decay = 0.1;
  const double norm = std::sqrt(SumOfSquares(grads.data(), kN));
  AdamWUpdate(params.data(), grads.data(), m.data(), v.data(), kN, options, 1,
              ClipScale(norm, 1.0));
  AdamWUpdate(params.data(), grads.data(), m.data(), v.data(), kN, options, 2,
              ClipScale(norm, 1.0));
  std::vector<double> result = {norm};
  result.insert(result.end(), params.begin(), params.end());
  result.insert(result.end(), m.begin(), m.end());
  result.insert(result.end(), v.begin(), v.end());
  return result;
}

TEST(AdamWTest, DeterministicAcrossRunsAndThreadCounts) {
  const auto reference = RunFloatAdamW();
  EXPECT_EQ(RunFloatAdamW(), reference);
  for (int threads : {1, 2, 3}) {
    testing::WithOmpThreads(threads, [&] { EXPECT_EQ(RunFloatAdamW(), reference) << threads; });
  }
}

}  // namespace
}  // namespace stagehand::ops
