// Tests for MoE dispatch: capacity, dropping in token order, dropless routing, and the gather's
// input-gradient against float64 finite differences.
#include "ops/cpu/moe_dispatch.h"

#include <vector>

#include "gtest/gtest.h"
#include "ops/cpu/test_util.h"

namespace stagehand::ops {
namespace {

using testing::Dot;
using testing::FiniteDifferenceGradient;
using testing::MaxRelativeError;
using testing::RandomVector;

TEST(MoeDispatchTest, CapacityIsTheCeilingOfTheFactorTimesTheFairShare) {
  EXPECT_EQ(MoeExpertCapacity(1.0, 10, 4, 2), 5);   // 20 choices / 4 experts
  EXPECT_EQ(MoeExpertCapacity(1.25, 10, 4, 1), 4);  // ceil(3.125)
  EXPECT_EQ(MoeExpertCapacity(0.0, 10, 4, 2), 20);  // dropless
  EXPECT_EQ(MoeExpertCapacity(100.0, 10, 4, 2), 20);
}

TEST(MoeDispatchTest, ChoicesOverCapacityAreDroppedInTokenOrder) {
  // 5 tokens, top-2 of 3 experts; capacity 3.
  const std::vector<int32_t> index = {0, 1, 0, 2, 1, 0, 0, 1, 2, 0};
  MoeRouting r;
  BuildMoeRouting(&r, index.data(), 5, 3, 2, 3);
  EXPECT_EQ(r.tokens_per_expert, (std::vector<int64_t>{5, 3, 2}));
  EXPECT_EQ(r.dropped, 2);  // expert 0's choices of tokens 3 and 4
  EXPECT_EQ(r.expert_offsets, (std::vector<int64_t>{0, 3, 6, 8}));
  EXPECT_EQ(r.row_token, (std::vector<int64_t>{0, 1, 2, 0, 2, 3, 1, 4}));
  EXPECT_EQ(r.choice_row, (std::vector<int64_t>{0, 3, 1, 6, 4, 2, -1, 5, 7, -1}));
}

TEST(MoeDispatchTest, DroplessKeepsEveryChoice) {
  const std::vector<int32_t> index = {1, 1, 1, 1};
  MoeRouting r;
  BuildMoeRouting(&r, index.data(), 4, 2, 1, MoeExpertCapacity(0.0, 4, 2, 1));
  EXPECT_EQ(r.dropped, 0);
  EXPECT_EQ(r.rows(), 4);
  EXPECT_EQ(r.expert_offsets, (std::vector<int64_t>{0, 0, 4}));
}

TEST(MoeDispatchTest, BackwardInputMatchesFiniteDifferences) {
  constexpr int N = 5, C = 3;
  const std::vector<int32_t> index = {0, 1, 0, 2, 1, 0, 0, 1, 2, 0};
  MoeRouting r;
  BuildMoeRouting(&r, index.data(), N, 3, 2, 3);
  auto x = RandomVector(N * C, 8);
  const auto probe = RandomVector(r.rows() * C, 9);
  std::vector<double> rows(r.rows() * C);
  const auto loss = [&] {
    MoeDispatchForward(rows.data(), x.data(), r, C);
    return Dot(probe, rows);
  };
  std::vector<double> dx(N * C, 0.0);
  MoeDispatchBackwardInput(dx.data(), probe.data(), r, N, C);
  EXPECT_LT(MaxRelativeError(dx, FiniteDifferenceGradient(loss, &x)), 1e-9);
  for (int c = 0; c < C; ++c) EXPECT_EQ(rows[0 * C + c], x[0 * C + c]);  // row 0 is token 0
}

}  // namespace
}  // namespace stagehand::ops
