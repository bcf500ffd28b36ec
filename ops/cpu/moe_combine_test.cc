// Tests for MoE combine: the gate-weighted sum, zeros for fully dropped tokens, and the
// input-gradient to the expert rows and the gates against float64 finite differences with the
// routing held fixed.
#include "ops/cpu/moe_combine.h"

#include <vector>

#include "gtest/gtest.h"
#include "ops/cpu/test_util.h"

namespace stagehand::ops {
namespace {

using testing::Dot;
using testing::FiniteDifferenceGradient;
using testing::MaxRelativeError;
using testing::RandomVector;

constexpr int N = 5, E = 3, K = 2, C = 4;

MoeRouting Routing() {
  // Token 4's two choices both go to full experts: it is dropped entirely (capacity 3).
  const std::vector<int32_t> index = {0, 1, 0, 2, 1, 0, 1, 2, 0, 1};
  MoeRouting r;
  BuildMoeRouting(&r, index.data(), N, E, K, 3);
  return r;
}

TEST(MoeCombineTest, ForwardIsTheGateWeightedSumAndZeroForDroppedTokens) {
  const MoeRouting r = Routing();
  ASSERT_EQ(r.choice_row[8], -1);
  ASSERT_EQ(r.choice_row[9], -1);
  const auto rows = RandomVector(r.rows() * C, 10);
  const auto gates = RandomVector(N * K, 11, 0.0, 1.0);
  std::vector<double> out(N * C, 7.0);
  MoeCombineForward(out.data(), rows.data(), gates.data(), r, N, C);
  for (int c = 0; c < C; ++c) {
    EXPECT_NEAR(out[c],
                gates[0] * rows[r.choice_row[0] * C + c] + gates[1] * rows[r.choice_row[1] * C + c],
                1e-15);
    EXPECT_EQ(out[4 * C + c], 0.0);
  }
}

TEST(MoeCombineTest, BackwardInputMatchesFiniteDifferences) {
  const MoeRouting r = Routing();
  auto rows = RandomVector(r.rows() * C, 12);
  auto gates = RandomVector(N * K, 13, 0.0, 1.0);
  const auto probe = RandomVector(N * C, 14);
  std::vector<double> out(N * C);
  const auto loss = [&] {
    MoeCombineForward(out.data(), rows.data(), gates.data(), r, N, C);
    return Dot(probe, out);
  };
  std::vector<double> drows(r.rows() * C, 99.0), dgates(N * K, 99.0);
  MoeCombineBackwardInput(drows.data(), dgates.data(), probe.data(), rows.data(), gates.data(), r,
                          N, C);
  EXPECT_LT(MaxRelativeError(drows, FiniteDifferenceGradient(loss, &rows)), 1e-9);
  EXPECT_LT(MaxRelativeError(dgates, FiniteDifferenceGradient(loss, &gates)), 1e-9);
  EXPECT_EQ(dgates[8], 0.0);
}

}  // namespace
}  // namespace stagehand::ops
