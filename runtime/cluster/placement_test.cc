// Tests of stage placement: contiguous, even blocks covering every stage once.
#include "runtime/cluster/placement.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::runtime {
namespace {

using ::stagehand::testing::StatusIs;

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

TEST(ClusterLayout, OneReplicaGroupsStagesInBlocksAsStagesOfRank) {
  ASSERT_OK_AND_ASSIGN(ClusterLayout layout, ClusterLayout::Create(5, 2, 1));
  EXPECT_EQ(layout.Stages(1), (std::vector<int>{2, 3, 4}));
  EXPECT_EQ(layout.Replica(1), 0);
  EXPECT_EQ(layout.StageRanks(0), StageRanks(5, 2));
}

// Megatron's order: dp varies fastest, so rank r is replica r % D, stage r / D.
TEST(ClusterLayout, DataParallelSeatsOneStageOfOneReplicaPerRankDpFastest) {
  ASSERT_OK_AND_ASSIGN(ClusterLayout layout, ClusterLayout::Create(3, 6, 2));
  for (int r = 0; r < 6; ++r) {
    EXPECT_EQ(layout.Replica(r), r % 2) << r;
    EXPECT_EQ(layout.Stages(r), (std::vector<int>{r / 2})) << r;
  }
  EXPECT_EQ(layout.StageRanks(0), (std::vector<int>{0, 2, 4}));
  EXPECT_EQ(layout.StageRanks(1), (std::vector<int>{1, 3, 5}));
}

TEST(ClusterLayout, WorkerCountsThatDoNotFitAreRefusedWithTheExpectedCount) {
  EXPECT_THAT(ClusterLayout::Create(2, 3, 2).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::HasSubstr("must number dp x stages = 4")));
  EXPECT_THAT(ClusterLayout::Create(2, 3, 1).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::HasSubstr("need 1 <= workers <= stages")));
  EXPECT_THAT(ClusterLayout::Create(2, 0, 1).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(RankFile, InsertsTheRankBeforeTheSafetensorsExtension) {
  EXPECT_EQ(RankFile("/o/params.safetensors", 2), "/o/params.rank2.safetensors");
  EXPECT_EQ(RankFile("/o/params.bin", 0), "/o/params.bin.rank0");
}

}  // namespace
}  // namespace stagehand::runtime
