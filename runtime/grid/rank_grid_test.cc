#include "runtime/grid/rank_grid.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::runtime {
namespace {

using ::stagehand::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(RankGridTest, DataPipelineCoordinatesRoundTrip) {
  ASSERT_OK_AND_ASSIGN(RankGrid grid, RankGrid::DataPipeline(/*dp=*/2, /*pp=*/3));
  EXPECT_EQ(grid.world_size(), 6);
  for (int r = 0; r < 6; ++r) {
    ASSERT_OK_AND_ASSIGN(std::vector<int> c, grid.Coordinates(r));
    EXPECT_EQ(c[0], r % 2) << r;  // dp varies fastest
    EXPECT_EQ(c[1], r / 2) << r;
    ASSERT_OK_AND_ASSIGN(int back, grid.RankAt(c));
    EXPECT_EQ(back, r);
  }
  ASSERT_OK_AND_ASSIGN(int pp, grid.Coordinate(5, "pp"));
  EXPECT_EQ(pp, 2);
  ASSERT_OK_AND_ASSIGN(int ep, grid.Coordinate(5, "ep"));  // absent dimension: coordinate 0
  EXPECT_EQ(ep, 0);
  EXPECT_EQ(grid.Size("ep"), 1);
}

TEST(RankGridTest, GroupsArePeersAlongADimension) {
  ASSERT_OK_AND_ASSIGN(RankGrid grid, RankGrid::DataPipeline(2, 3));
  ASSERT_OK_AND_ASSIGN(std::vector<int> dp_peers, grid.Group(3, {"dp"}));
  EXPECT_THAT(dp_peers, ElementsAre(2, 3));
  ASSERT_OK_AND_ASSIGN(std::vector<int> pipeline, grid.Group(3, {"pp"}));
  EXPECT_THAT(pipeline, ElementsAre(1, 3, 5));
  ASSERT_OK_AND_ASSIGN(std::vector<int> world, grid.Group(3, {"pp", "dp"}));
  EXPECT_THAT(world, ElementsAre(0, 1, 2, 3, 4, 5));
  ASSERT_OK_AND_ASSIGN(auto pipelines, grid.Groups({"pp"}));
  ASSERT_EQ(pipelines.size(), 2u);
  EXPECT_THAT(pipelines[0], ElementsAre(0, 2, 4));
  EXPECT_THAT(pipelines[1], ElementsAre(1, 3, 5));
}

TEST(RankGridTest, ExpertGroupsAreCarvedOutOfDataParallel) {
  ASSERT_OK_AND_ASSIGN(RankGrid grid, RankGrid::DataPipeline(4, 2));
  ASSERT_OK_AND_ASSIGN(RankGrid carved, grid.Split("dp", {{"ep", 2}, {"edp", 2}}));
  EXPECT_EQ(carved.world_size(), 8);
  EXPECT_EQ(carved.Size("dp"), 1);
  // Rank 5 is dp=1, pp=1 in the first grid; its expert group holds the dp neighbours 0/1
  // of stage 1, and the union of its ep and edp groups is its whole dp group.
  ASSERT_OK_AND_ASSIGN(std::vector<int> ep, carved.Group(5, {"ep"}));
  EXPECT_THAT(ep, ElementsAre(4, 5));
  ASSERT_OK_AND_ASSIGN(std::vector<int> edp, carved.Group(5, {"edp"}));
  EXPECT_THAT(edp, ElementsAre(5, 7));
  ASSERT_OK_AND_ASSIGN(std::vector<int> dp, grid.Group(5, {"dp"}));
  ASSERT_OK_AND_ASSIGN(std::vector<int> both, carved.Group(5, {"ep", "edp"}));
  EXPECT_EQ(dp, both);
}

TEST(RankGridTest, BadInputsNameWhatIsWrong) {
  EXPECT_THAT(RankGrid::DataPipeline(0, 2).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dp=0")));
  EXPECT_THAT(RankGrid::Create({{"dp", 2}, {"dp", 2}}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("twice")));
  EXPECT_THAT(RankGrid::Create({{"dp", 1 << 11}, {"pp", 1 << 11}}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("more than")));
  EXPECT_THAT(RankGrid::Create({{"2x", 2}}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bad name")));
  ASSERT_OK_AND_ASSIGN(RankGrid grid, RankGrid::DataPipeline(2, 2));
  EXPECT_THAT(grid.Coordinates(4).status(),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("outside the grid")));
  EXPECT_THAT(grid.RankAt({0, 2}).status(),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("pp=2")));
  EXPECT_THAT(grid.Group(0, {"tp"}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no dimension 'tp'")));
  EXPECT_THAT(grid.Split("dp", {{"ep", 3}}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cannot split dp=2")));
}

TEST(RankGridTest, DescribeNamesEveryRanksGroups) {
  ASSERT_OK_AND_ASSIGN(RankGrid grid, RankGrid::DataPipeline(2, 2));
  std::string text = grid.Describe();
  EXPECT_THAT(text, HasSubstr("grid: world 4 = dp 2 x pp 2 (dp varies fastest)"));
  EXPECT_THAT(text, HasSubstr("rank 3: dp=1 pp=1  dp-group {2,3}  pp-group {1,3}"));
}

}  // namespace
}  // namespace stagehand::runtime
