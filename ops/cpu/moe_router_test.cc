// Tests for the MoE router: softmax and top-k with the lower index winning ties, and the
// input-gradient (gates and probabilities to logits) against float64 finite differences with
// the routing held fixed.
#include "ops/cpu/moe_router.h"

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

TEST(MoeRouterTest, ForwardIsSoftmaxThenTopKWithTiesToTheLowerIndex) {
  const std::vector<double> logits = {1.0,  3.0, 3.0, 0.0,  // a tie between experts 1 and 2
                                      -2.0, 0.5, 0.0, 4.0};
  std::vector<double> probs(8), gates(4);
  std::vector<int32_t> index(4);
  MoeRouterForward(probs.data(), index.data(), gates.data(), logits.data(), 2, 4, 2);
  EXPECT_EQ(index, (std::vector<int32_t>{1, 2, 3, 1}));
  for (int n = 0; n < 2; ++n) {
    double sum = 0.0, denominator = 0.0;
    for (int e = 0; e < 4; ++e) denominator += std::exp(logits[n * 4 + e]);
    for (int e = 0; e < 4; ++e) {
      EXPECT_NEAR(probs[n * 4 + e], std::exp(logits[n * 4 + e]) / denominator, 1e-15);
      sum += probs[n * 4 + e];
    }
    EXPECT_NEAR(sum, 1.0, 1e-15);
    for (int k = 0; k < 2; ++k) EXPECT_EQ(gates[n * 2 + k], probs[n * 4 + index[n * 2 + k]]);
  }
}

TEST(MoeRouterTest, AllEqualLogitsPickTheFirstExperts) {
  const std::vector<float> logits(5, 0.25f);
  std::vector<float> probs(5), gates(3);
  std::vector<int32_t> index(3);
  MoeRouterForward(probs.data(), index.data(), gates.data(), logits.data(), 1, 5, 3);
  EXPECT_EQ(index, (std::vector<int32_t>{0, 1, 2}));
}

TEST(MoeRouterTest, BackwardInputMatchesFiniteDifferencesWithRoutingFixed) {
  constexpr int N = 5, E = 7, K = 3;
  auto logits = RandomVector(N * E, 1, -2.0, 2.0);
  const auto probe_gates = RandomVector(N * K, 2);
  const auto probe_probs = RandomVector(N * E, 3);
  std::vector<double> probs(N * E), gates(N * K);
  std::vector<int32_t> index(N * K);
  MoeRouterForward(probs.data(), index.data(), gates.data(), logits.data(), N, E, K);
  const std::vector<int32_t> fixed = index;
  // Loss = <probe_gates, probs at the fixed choices> + <probe_probs, probs>.
  const auto loss = [&] {
    MoeRouterForward(probs.data(), index.data(), gates.data(), logits.data(), N, E, K);
    double sum = Dot(probe_probs, probs);
    for (int n = 0; n < N; ++n) {
      for (int k = 0; k < K; ++k) sum += probe_gates[n * K + k] * probs[n * E + fixed[n * K + k]];
    }
    return sum;
  };
  loss();
  std::vector<double> dprobs = probe_probs;
  MoeGatesBackwardInput(dprobs.data(), probe_gates.data(), fixed.data(), N, E, K);
  std::vector<double> dlogits(N * E, 0.0);
  MoeRouterBackwardInput(dlogits.data(), dprobs.data(), probs.data(), N, E);
  EXPECT_LT(MaxRelativeError(dlogits, FiniteDifferenceGradient(loss, &logits)), 1e-8);
  loss();  // the differences left probs at a perturbed point
  auto twice = dlogits;
  MoeRouterBackwardInput(twice.data(), dprobs.data(), probs.data(), N, E);
  for (size_t i = 0; i < dlogits.size(); ++i) EXPECT_EQ(twice[i], 2 * dlogits[i]);
}

}  // namespace
}  // namespace stagehand::ops
