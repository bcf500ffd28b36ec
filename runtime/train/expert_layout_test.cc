#include "runtime/train/expert_layout.h"

#include <memory>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/gpt_chunk.h"
#include "models/test_configs.h"

namespace stagehand::runtime {
namespace {

using models::ParamInfo;

models::GptConfig MoeModel() { return models::testing::SmallMoe(); }

std::unique_ptr<models::GptChunk<float>> Chunk(int member, int size) {
  models::ChunkOptions options{2, 4, 1};
  options.expert_shard = {member, size};
  auto chunk = models::GptChunk<float>::Create(MoeModel(), {0, 3, true, true}, options);
  EXPECT_TRUE(chunk.ok()) << chunk.status();
  return std::move(*chunk);
}

std::vector<std::string> Names(const std::vector<ParamInfo>& infos) {
  std::vector<std::string> names;
  for (const ParamInfo& info : infos) {
    if (!info.tied_copy) names.push_back(info.name);
  }
  return names;
}

// Member 1 of 2's names, with every member's expert names put in their places, are the whole
// model's names in the whole model's order.
TEST(ExpertLayoutTest, MembersExpertRunsInMemberOrderAreTheWholeModelsOrder) {
  const auto whole = Chunk(0, 1);
  const auto shard = Chunk(1, 2);
  const std::vector<ParamInfo>& infos = shard->params().infos();
  std::vector<std::vector<std::string>> experts;
  for (int j = 0; j < 2; ++j) experts.push_back(ExpertNamesOf(infos, 1, j));
  EXPECT_EQ(experts[1], ExpertEntries(infos, Names(infos)));
  EXPECT_THAT(experts[0], ::testing::Contains("h.1.mlp.experts.1.c_proj.weight"));
  EXPECT_THAT(experts[0], ::testing::Contains("h.2.mlp.experts.0.c_fc.weight"));
  EXPECT_EQ(InModelOrder(infos, Names(infos), experts), Names(whole->params().infos()));
}

// A range across dense and expert tensors is cut at each kind's change, covering it exactly.
TEST(ExpertLayoutTest, SplitAtExpertsCutsWhereTheKindChanges) {
  const auto shard = Chunk(0, 2);
  const std::vector<ParamInfo>& infos = shard->params().infos();
  const ElementRange all{0, shard->params().size()};
  const std::vector<GradientPiece> pieces = SplitAtExperts(infos, all);
  ASSERT_EQ(pieces.size(), 5u);  // dense, layer 1's experts, dense, layer 2's experts, dense
  int64_t at = 0;
  for (size_t p = 0; p < pieces.size(); ++p) {
    EXPECT_EQ(pieces[p].range.begin, at);
    EXPECT_EQ(pieces[p].expert, p % 2 == 1);
    at = pieces[p].range.end;
  }
  EXPECT_EQ(at, all.end);
  for (const ParamInfo& info : infos) {
    const ElementRange inside{info.offset + 1, info.offset + 2};
    EXPECT_EQ(SplitAtExperts(infos, inside),
              (std::vector<GradientPiece>{{inside, info.expert >= 0}}))
        << info.name;
  }
  EXPECT_TRUE(SplitAtExperts(infos, {3, 3}).empty());
}

// ZeRO-1's layout: the pieces as SplitAtExperts cuts the whole buffer, each kind's pieces
// numbered one after another from 0; without split_experts one dense piece.
TEST(ExpertLayoutTest, ShardLayoutConcatenatesEachKindsPieces) {
  const auto shard = Chunk(0, 2);
  const std::vector<ParamInfo>& infos = shard->params().infos();
  const int64_t n = shard->params().size();
  const ShardLayout layout = ShardLayoutOf(infos, n, true);
  ASSERT_EQ(layout.pieces.size(), 5u);
  int64_t next[2] = {0, 0};  // dense, experts
  for (const ShardPiece& p : layout.pieces) {
    EXPECT_EQ(p.at, next[p.piece.expert]);
    next[p.piece.expert] += p.piece.range.size();
  }
  EXPECT_EQ(layout.dense, next[0]);
  EXPECT_EQ(layout.experts, next[1]);
  EXPECT_EQ(layout.dense + layout.experts, n);
  const ShardLayout whole = ShardLayoutOf(infos, n, false);
  ASSERT_EQ(whole.pieces.size(), 1u);
  EXPECT_EQ(whole.pieces[0].piece, (GradientPiece{{0, n}, false}));
  EXPECT_EQ(whole.dense, n);
  EXPECT_EQ(whole.experts, 0);
}

}  // namespace
}  // namespace stagehand::runtime
