// Tests for the load-balancing loss: its range (1 when balanced, E when collapsed) and its
// gradient to the probabilities and, through the router, to the logits against float64 finite
// differences with the routing (and so the counts) held fixed.
#include "ops/cpu/moe_load_balancing_loss.h"

#include <vector>

#include "gtest/gtest.h"
#include "ops/cpu/moe_router.h"
#include "ops/cpu/test_util.h"

namespace stagehand::ops {
namespace {

using testing::FiniteDifferenceGradient;
using testing::MaxRelativeError;
using testing::RandomVector;

TEST(MoeLoadBalancingLossTest, IsOneWhenBalancedAndEWhenCollapsed) {
  constexpr int N = 4, E = 4, K = 1;
  const std::vector<double> uniform(N * E, 0.25);
  const std::vector<int64_t> balanced = {1, 1, 1, 1};
  EXPECT_NEAR(MoeLoadBalancingLossForward(uniform.data(), balanced.data(), N, E, K), 1.0, 1e-15);
  std::vector<double> collapsed(N * E, 0.0);
  for (int n = 0; n < N; ++n) collapsed[n * E + 2] = 1.0;
  const std::vector<int64_t> all_on_two = {0, 0, 4, 0};
  EXPECT_NEAR(MoeLoadBalancingLossForward(collapsed.data(), all_on_two.data(), N, E, K), 4.0,
              1e-15);
}

TEST(MoeLoadBalancingLossTest, GradientThroughTheRouterMatchesFiniteDifferences) {
  constexpr int N = 6, E = 5, K = 2;
  auto logits = RandomVector(N * E, 4, -2.0, 2.0);
  std::vector<double> probs(N * E), gates(N * K);
  std::vector<int32_t> index(N * K);
  MoeRouterForward(probs.data(), index.data(), gates.data(), logits.data(), N, E, K);
  std::vector<int64_t> counts(E, 0);
  for (int32_t e : index) ++counts[e];  // held fixed below
  constexpr double kCoefficient = 0.3;
  const auto loss = [&] {
    MoeRouterForward(probs.data(), index.data(), gates.data(), logits.data(), N, E, K);
    return kCoefficient * MoeLoadBalancingLossForward(probs.data(), counts.data(), N, E, K);
  };
  loss();
  std::vector<double> dprobs(N * E, 0.0), dlogits(N * E, 0.0);
  MoeLoadBalancingLossBackwardInput(dprobs.data(), counts.data(), N, E, K, kCoefficient);
  MoeRouterBackwardInput(dlogits.data(), dprobs.data(), probs.data(), N, E);
  EXPECT_LT(MaxRelativeError(dlogits, FiniteDifferenceGradient(loss, &logits)), 1e-8);
  // And straight to the probabilities (the loss is linear in them).
  auto p = RandomVector(N * E, 5, 0.0, 1.0);
  const auto linear = [&] {
    return kCoefficient * MoeLoadBalancingLossForward(p.data(), counts.data(), N, E, K);
  };
  std::vector<double> dp(N * E, 0.0);
  MoeLoadBalancingLossBackwardInput(dp.data(), counts.data(), N, E, K, kCoefficient);
  EXPECT_LT(MaxRelativeError(dp, FiniteDifferenceGradient(linear, &p)), 1e-9);
}

TEST(MoeLoadBalancingLossTest, FloatMatchesDouble) {
  constexpr int N = 3, E = 4, K = 2;
  const auto probs = RandomVector(N * E, 6, 0.0, 1.0);
  const std::vector<int64_t> counts = {2, 1, 3, 0};
  const auto probs_f = testing::Cast<float>(probs);
  EXPECT_NEAR(MoeLoadBalancingLossForward(probs_f.data(), counts.data(), N, E, K),
              MoeLoadBalancingLossForward(probs.data(), counts.data(), N, E, K), 1e-6);
}

}  // namespace
}  // namespace stagehand::ops
