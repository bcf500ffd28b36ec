// Tests for the CPU RoPE: Hugging Face's rotate_half convention on a hand-computed case, I
// against finite differences in double on a packed qkv layout with odd sizes, the rotation
// keeps norms, and position 0 is the identity.
#include "ops/cpu/rope.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "ops/cpu/test_util.h"

namespace stagehand::ops {
namespace {

using testing::Dot;
using testing::FiniteDifferenceGradient;
using testing::MaxRelativeError;
using testing::RandomVector;

TEST(RopeTest, RotatesHalvesAsHuggingFaceDoes) {
  // One head of size 4: pairs (0, 2) at frequency 1 and (1, 3) at frequency base^(-1/2).
  std::vector<double> x = {1.0, 2.0, 3.0, 4.0};
  const std::vector<int32_t> positions = {5};
  RopeShape shape;
  shape.stride = 4;
  shape.hs = 4;
  shape.base = 100.0;
  RopeForward(x.data(), positions.data(), shape);
  const double a0 = 5.0, a1 = 5.0 / 10.0;
  EXPECT_NEAR(x[0], 1 * std::cos(a0) - 3 * std::sin(a0), 1e-14);
  EXPECT_NEAR(x[2], 3 * std::cos(a0) + 1 * std::sin(a0), 1e-14);
  EXPECT_NEAR(x[1], 2 * std::cos(a1) - 4 * std::sin(a1), 1e-14);
  EXPECT_NEAR(x[3], 4 * std::cos(a1) + 2 * std::sin(a1), 1e-14);
}

// q and k heads of a GQA qkv row: 3 query heads + 1 key head (rotated), 1 value head (not).
RopeShape QkShape() {
  RopeShape shape;
  shape.N = 5;
  shape.stride = (3 + 2) * 6;
  shape.offset = 0;
  shape.num_heads = 4;
  shape.hs = 6;
  return shape;
}

TEST(RopeTest, BackwardInputMatchesFiniteDifferences) {
  const RopeShape shape = QkShape();
  const std::vector<int32_t> positions = {0, 1, 2, 0, 1};  // two packed documents
  auto x = RandomVector(shape.N * shape.stride, 1);
  const auto probe = RandomVector(x.size(), 2);
  const auto loss = [&] {
    std::vector<double> y = x;
    RopeForward(y.data(), positions.data(), shape);
    return Dot(probe, y);
  };
  std::vector<double> grad = probe;
  RopeBackwardInput(grad.data(), positions.data(), shape);
  EXPECT_LT(MaxRelativeError(grad, FiniteDifferenceGradient(loss, &x)), 1e-8);
  // The value head (columns 24..29) passes through untouched.
  for (int n = 0; n < shape.N; ++n) {
    for (int c = 24; c < 30; ++c) EXPECT_EQ(grad[n * 30 + c], probe[n * 30 + c]);
  }
}

TEST(RopeTest, KeepsNormsAndPositionZeroIsIdentity) {
  const RopeShape shape = QkShape();
  const std::vector<int32_t> positions = {0, 7, 100, 0, 2047};
  const auto x = RandomVector(shape.N * shape.stride, 3);
  auto y = x;
  RopeForward(y.data(), positions.data(), shape);
  for (int n = 0; n < shape.N; ++n) {
    double before = 0.0, after = 0.0;
    for (int c = 0; c < shape.stride; ++c) {
      before += x[n * shape.stride + c] * x[n * shape.stride + c];
      after += y[n * shape.stride + c] * y[n * shape.stride + c];
    }
    EXPECT_NEAR(after, before, 1e-12);
  }
  for (int c = 0; c < shape.stride; ++c) EXPECT_EQ(y[c], x[c]);  // position 0
  RopeBackwardInput(y.data(), positions.data(), shape);          // the inverse rotation
  EXPECT_LT(testing::MaxAbsoluteDifference(y, x), 1e-12);
}

}  // namespace
}  // namespace stagehand::ops
