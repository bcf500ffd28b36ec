#include "ops/cuda/token_groups.h"

#include <vector>

#include "gtest/gtest.h"

namespace stagehand::ops::cuda {
namespace {

TEST(TokenGroups, PositionsAreGroupedByTokenInIncreasingOrder) {
  const std::vector<int32_t> tokens = {5, 2, 5, 0, 2, 5, 9};
  const TokenGroups g = GroupPositionsByToken(tokens.data(), tokens.size(), 10);
  EXPECT_EQ(g.ids, (std::vector<int32_t>{0, 2, 5, 9}));
  EXPECT_EQ(g.starts, (std::vector<int32_t>{0, 1, 3, 6, 7}));
  EXPECT_EQ(g.order, (std::vector<int32_t>{3, 1, 4, 0, 2, 5, 6}));
  EXPECT_EQ(g.groups(), 4);
}

TEST(TokenGroups, EveryPositionOnceAndEachGroupOneToken) {
  std::vector<int32_t> tokens;
  for (int i = 0; i < 1000; ++i) tokens.push_back((i * 7919) % 37);
  const TokenGroups g = GroupPositionsByToken(tokens.data(), tokens.size(), 50);
  std::vector<int> seen(tokens.size(), 0);
  for (int k = 0; k < g.groups(); ++k) {
    for (int32_t i = g.starts[k]; i < g.starts[k + 1]; ++i) {
      EXPECT_EQ(tokens[g.order[i]], g.ids[k]);
      if (i > g.starts[k]) EXPECT_LT(g.order[i - 1], g.order[i]);
      ++seen[g.order[i]];
    }
  }
  for (int count : seen) EXPECT_EQ(count, 1);
}

TEST(TokenGroups, NoPositionsNoGroups) {
  const TokenGroups g = GroupPositionsByToken(nullptr, 0, 4);
  EXPECT_EQ(g.groups(), 0);
  EXPECT_EQ(g.starts, (std::vector<int32_t>{0}));
}

}  // namespace
}  // namespace stagehand::ops::cuda
