// Tests for the vectorisable float exp and tanh: error against double libm over their ranges,
// the clamped ends, and the same bits inside a vectorised loop as in a lone call.
#include "ops/cpu/vector_math.h"

#include <cmath>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

namespace stagehand::ops::internal {
namespace {

TEST(VectorMathTest, ExpWithinTwoUlpOverItsRange) {
  const double ulp = std::numeric_limits<float>::epsilon();  // relative spacing at most this
  double worst = 0.0;
  for (float x = -87.0f; x <= 88.0f; x += 0.00731f) {
    const double exact = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::abs(ExpFloat(x) - exact) / exact);
  }
  EXPECT_LT(worst, 2 * ulp);
}

TEST(VectorMathTest, ExpIsExactAtZeroAndZeroBelowTheNormalRange) {
  EXPECT_EQ(ExpFloat(0.0f), 1.0f);
  EXPECT_EQ(ExpFloat(-88.0f), 0.0f);
  EXPECT_EQ(ExpFloat(-1e30f), 0.0f);
  EXPECT_EQ(ExpFloat(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_TRUE(std::isfinite(ExpFloat(1e30f)));
  EXPECT_TRUE(std::isnan(ExpFloat(std::numeric_limits<float>::quiet_NaN())));
}

TEST(VectorMathTest, TanhWithinAFewUlpAndOdd) {
  double worst = 0.0;
  for (float x = -10.0f; x <= 10.0f; x += 0.000713f) {
    worst = std::max(worst, std::abs(TanhFloat(x) - std::tanh(static_cast<double>(x))));
    ASSERT_EQ(TanhFloat(-x), -TanhFloat(x)) << x;
  }
  EXPECT_LT(worst, 4 * std::numeric_limits<float>::epsilon());  // absolute: tanh is at most 1
  EXPECT_EQ(TanhFloat(0.0f), 0.0f);
  EXPECT_EQ(TanhFloat(1e-5f), 1e-5f);
  EXPECT_EQ(TanhFloat(50.0f), 1.0f);
  EXPECT_EQ(TanhFloat(-50.0f), -1.0f);
}

// A lone call through a pointer the compiler cannot see into, against the same function in a
// loop it vectorises: the bits must agree, or results would depend on loop length and offset.
using FloatFunction = float (*)(float);
volatile FloatFunction exp_pointer = ExpFloat;
volatile FloatFunction tanh_pointer = TanhFloat;

TEST(VectorMathTest, VectorisedLoopGivesTheSameBitsAsLoneCalls) {
  constexpr int kN = 1003;
  std::vector<float> x(kN), exp_out(kN), tanh_out(kN);
  for (int i = 0; i < kN; ++i) x[i] = -30.0f + 60.0f * i / kN;
  for (int i = 0; i < kN; ++i) exp_out[i] = ExpFloat(x[i]);
  for (int i = 0; i < kN; ++i) tanh_out[i] = TanhFloat(x[i]);
  for (int i = 0; i < kN; ++i) {
    ASSERT_EQ(exp_out[i], exp_pointer(x[i])) << x[i];
    ASSERT_EQ(tanh_out[i], tanh_pointer(x[i])) << x[i];
  }
}

TEST(VectorMathTest, DoubleOverloadsAreLibm) {
  EXPECT_EQ(Exp(0.75), std::exp(0.75));
  EXPECT_EQ(Tanh(0.75), std::tanh(0.75));
}

}  // namespace
}  // namespace stagehand::ops::internal
