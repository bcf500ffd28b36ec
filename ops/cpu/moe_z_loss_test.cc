// Tests for the router z-loss: its value against the definition and its gradient against float64
// finite differences.
#include "ops/cpu/moe_z_loss.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "ops/cpu/test_util.h"

namespace stagehand::ops {
namespace {

using testing::FiniteDifferenceGradient;
using testing::MaxRelativeError;
using testing::RandomVector;

TEST(MoeZLossTest, ForwardIsTheMeanSquaredLogSumExp) {
  const std::vector<double> logits = {0.0, 0.0, 1.0, 2.0, 3.0, -1.0};
  const double z0 = std::log(std::exp(0.0) + std::exp(0.0) + std::exp(1.0));
  const double z1 = std::log(std::exp(2.0) + std::exp(3.0) + std::exp(-1.0));
  EXPECT_NEAR(MoeZLossForward(logits.data(), 2, 3), (z0 * z0 + z1 * z1) / 2, 1e-14);
}

TEST(MoeZLossTest, BackwardInputMatchesFiniteDifferencesAndAccumulates) {
  constexpr int N = 4, E = 6;
  auto logits = RandomVector(N * E, 7, -3.0, 3.0);
  const auto loss = [&] { return 0.7 * MoeZLossForward(logits.data(), N, E); };
  std::vector<double> dlogits(N * E, 0.0);
  MoeZLossBackwardInput(dlogits.data(), logits.data(), N, E, 0.7);
  EXPECT_LT(MaxRelativeError(dlogits, FiniteDifferenceGradient(loss, &logits)), 1e-8);
  auto twice = dlogits;
  MoeZLossBackwardInput(twice.data(), logits.data(), N, E, 0.7);
  for (size_t i = 0; i < dlogits.size(); ++i) EXPECT_DOUBLE_EQ(twice[i], 2 * dlogits[i]);
}

}  // namespace
}  // namespace stagehand::ops
