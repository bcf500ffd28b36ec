// Tests for --partition: equal counts, explicit counts and their errors, and the balanced cut
// (optimal against brute force on small cases, never dropping or duplicating a layer).
#include "models/partition.h"

#include <numeric>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::models {
namespace {

using ::stagehand::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A stack whose layer costs differ a lot: wide MLPs, missing parts, linear replacements.
GptConfig Uneven() {
  GptConfig c = UniformGpt(7, 64, 4, 256, 64, 1);
  c.layers[0].ffn_hidden = 1024;
  c.layers[1].attention = AttentionKind::kNone;
  c.layers[2].mlp = MlpKind::kNone;
  c.layers[3].attention = AttentionKind::kLinear;
  c.layers[3].mlp = MlpKind::kLinear;
  c.layers[5].ffn_hidden = 512;
  return c;
}

double MaxChunkCost(const std::vector<double>& costs, const std::vector<int>& sizes) {
  double best = 0.0;
  int layer = 0;
  for (int n : sizes) {
    double sum = 0.0;
    for (int i = 0; i < n; ++i) sum += costs[layer++];
    best = std::max(best, sum);
  }
  return best;
}

// Every cut of L layers into K non-empty chunks: the smallest achievable maximum.
double BruteForce(const std::vector<double>& costs, int K, int first = 0) {
  const int L = static_cast<int>(costs.size());
  if (K == 1) return std::accumulate(costs.begin() + first, costs.end(), 0.0);
  double best = 1e300, sum = 0.0;
  for (int end = first + 1; end <= L - (K - 1); ++end) {
    sum += costs[end - 1];
    best = std::min(best, std::max(sum, BruteForce(costs, K - 1, end)));
  }
  return best;
}

TEST(PartitionTest, EqualIsTheDefaultCut) {
  ASSERT_OK_AND_ASSIGN(std::vector<int> sizes, ResolvePartition("", Uneven(), 3, 64));
  EXPECT_THAT(sizes, ElementsAre(3, 2, 2));
  ASSERT_OK_AND_ASSIGN(sizes, ResolvePartition("equal", Uneven(), 3, 64));
  EXPECT_THAT(sizes, ElementsAre(3, 2, 2));
}

TEST(PartitionTest, BalancedIsOptimalAndKeepsEveryLayer) {
  const GptConfig config = Uneven();
  const std::vector<double> costs = LayerCosts(config, 64);
  for (int chunks = 1; chunks <= 7; ++chunks) {
    ASSERT_OK_AND_ASSIGN(std::vector<int> sizes, ResolvePartition("balanced", config, chunks, 64));
    ASSERT_EQ(static_cast<int>(sizes.size()), chunks);
    EXPECT_EQ(std::accumulate(sizes.begin(), sizes.end(), 0), 7);
    for (int n : sizes) EXPECT_GE(n, 1);
    EXPECT_NEAR(MaxChunkCost(costs, sizes), BruteForce(costs, chunks), 1e-9 * costs[0]) << chunks;
  }
  ASSERT_OK_AND_ASSIGN(std::vector<int> equal, ResolvePartition("equal", config, 4, 64));
  ASSERT_OK_AND_ASSIGN(std::vector<int> balanced, ResolvePartition("balanced", config, 4, 64));
  EXPECT_LT(MaxChunkCost(costs, balanced), MaxChunkCost(costs, equal));
}

TEST(PartitionTest, ExplicitCountsAreCheckedWithClearErrors) {
  ASSERT_OK_AND_ASSIGN(std::vector<int> sizes, ResolvePartition("1,2,4", Uneven(), 3, 64));
  EXPECT_THAT(sizes, ElementsAre(1, 2, 4));
  EXPECT_THAT(
      ResolvePartition("1,2", Uneven(), 3, 64).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("gives 2 chunks; the plan has 3")));
  EXPECT_THAT(ResolvePartition("1,2,3", Uneven(), 3, 64).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("adds up to 6 layers; the model has 7")));
  EXPECT_THAT(
      ResolvePartition("1,0,6", Uneven(), 3, 64).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'0' is not a positive layer count")));
  EXPECT_THAT(ResolvePartition("fast", Uneven(), 3, 64).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'fast' is not")));
  EXPECT_THAT(
      ResolvePartition("balanced", Uneven(), 8, 64).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cannot cut 7 layers into 8")));
}

TEST(PartitionTest, DescribeGivesEachChunksShare) {
  const GptConfig config = UniformGpt(4, 32, 2, 256, 16, 1);
  EXPECT_THAT(DescribePartition("", {2, 2}, config, 16),
              HasSubstr("equal: layers 2,2, estimated shares "));
}

}  // namespace
}  // namespace stagehand::models
