// Tests of stage placement: contiguous, even blocks covering every stage once.
#include "runtime/cluster/placement.h"

#include "gtest/gtest.h"

namespace stagehand::runtime {
namespace {

TEST(Placement, EvenSplitGivesContiguousBlocks) {
  EXPECT_EQ(StagesOfRank(4, 2, 0), (std::vector<int>{0, 1}));
  EXPECT_EQ(StagesOfRank(4, 2, 1), (std::vector<int>{2, 3}));
  EXPECT_EQ(StagesOfRank(4, 4, 3), (std::vector<int>{3}));
}

TEST(Placement, UnevenSplitCoversEveryStageOnce) {
  EXPECT_EQ(StageRanks(5, 2), (std::vector<int>{0, 0, 1, 1, 1}));
  EXPECT_EQ(StageRanks(7, 3), (std::vector<int>{0, 0, 1, 1, 2, 2, 2}));
}

TEST(Placement, OneRankHoldsEveryStage) {
  EXPECT_EQ(StagesOfRank(3, 1, 0), (std::vector<int>{0, 1, 2}));
}

TEST(RankFile, InsertsTheRankBeforeTheSafetensorsExtension) {
  EXPECT_EQ(RankFile("/o/params.safetensors", 2), "/o/params.rank2.safetensors");
  EXPECT_EQ(RankFile("/o/params.bin", 0), "/o/params.bin.rank0");
}

}  // namespace
}  // namespace stagehand::runtime
