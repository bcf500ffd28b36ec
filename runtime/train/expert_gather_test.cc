#include "runtime/train/expert_gather.h"

#include <algorithm>
#include <memory>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "models/gpt_chunk.h"
#include "models/test_configs.h"
#include "runtime/collectives/in_process_collective.h"

namespace stagehand::runtime {
namespace {

models::GptConfig MoeModel() { return models::testing::SmallMoe(); }

std::unique_ptr<Chunk> MakeChunk(int member, int size) {
  models::ChunkOptions options{2, 4, 1};
  options.expert_shard = {member, size};
  auto chunk = Chunk::Create(MoeModel(), {0, 3, true, true}, options);
  EXPECT_TRUE(chunk.ok()) << chunk.status();
  return std::move(*chunk);
}

// A whole model whose every element differs from the initialisation's and from each other, with
// moments as distinct.
struct Reference {
  std::unique_ptr<Chunk> chunk = MakeChunk(0, 1);
  OptimizerState moments;
  Reference() {
    const int64_t n = chunk->params().size();
    for (int64_t i = 0; i < n; ++i) chunk->params().values()[i] = 0.25f * i;
    for (int64_t i = 0; i < n; ++i) moments.m.push_back(1.0f + i);
    for (int64_t i = 0; i < n; ++i) moments.v.push_back(2.0f + 3.0f * i);
  }
};

// Member j of `size`'s shard of `reference`: its tensors (and moments) by name.
void TakeShard(const Reference& reference, Chunk& shard, OptimizerState* moments) {
  const models::ParameterSet<float>& whole = reference.chunk->params();
  CopyHeldTensors(whole, whole.values(), shard.params(), shard.params().values());
  if (moments != nullptr) CopyHeldMoments(whole, reference.moments, shard.params(), *moments);
}

// Each member gathers, on a thread of its own (the group's calls meet), into its own whole chunk.
void GatherOnEveryMember(std::vector<std::unique_ptr<Chunk>>& shards,
                         std::vector<OptimizerState>& shard_moments,
                         std::vector<std::unique_ptr<Chunk>>& wholes,
                         std::vector<OptimizerState>& whole_moments) {
  const int size = static_cast<int>(shards.size());
  InProcessGroupMembers group = MakeInProcessGroup(size);
  std::vector<absl::Status> status(size);
  std::vector<std::thread> threads;
  for (int j = 0; j < size; ++j) {
    threads.emplace_back([&, j] {
      status[j] = GatherExperts(*group.members[j], *shards[j], &shard_moments[j], wholes[j].get(),
                                wholes[j] ? &whole_moments[j] : nullptr,
                                /*with_moments=*/true);
    });
  }
  for (std::thread& t : threads) t.join();
  for (int j = 0; j < size; ++j) EXPECT_TRUE(status[j].ok()) << "member " << j << ": " << status[j];
}

// Two members' shards of a model gather into the whole model on both, values and moments,
// every element where the whole model has it.
TEST(ExpertGatherTest, MembersShardsGatherIntoTheWholeModelOnEveryMember) {
  const Reference reference;
  std::vector<std::unique_ptr<Chunk>> shards, wholes;
  std::vector<OptimizerState> shard_moments(2), whole_moments(2);
  for (int j = 0; j < 2; ++j) {
    shards.push_back(MakeChunk(j, 2));
    wholes.push_back(MakeChunk(0, 1));
    TakeShard(reference, *shards[j], &shard_moments[j]);
  }
  ASSERT_LT(shards[0]->params().size(), reference.chunk->params().size());
  GatherOnEveryMember(shards, shard_moments, wholes, whole_moments);
  const models::ParameterSet<float>& want = reference.chunk->params();
  for (int j = 0; j < 2; ++j) {
    const models::ParameterSet<float>& got = wholes[j]->params();
    ASSERT_EQ(got.size(), want.size());
    for (const models::ParamInfo& info : want.infos()) {
      for (int64_t i = info.offset; i < info.offset + info.size; ++i) {
        ASSERT_EQ(got.values()[i], want.values()[i]) << "member " << j << ": " << info.name;
      }
    }
    EXPECT_EQ(whole_moments[j].m, reference.moments.m) << "member " << j;
    EXPECT_EQ(whole_moments[j].v, reference.moments.v) << "member " << j;
  }
}

// A member without a whole chunk hands its experts over all the same: member 0 gathers them.
TEST(ExpertGatherTest, AMemberWithoutAWholeChunkOnlyHandsItsExpertsOver) {
  const Reference reference;
  std::vector<std::unique_ptr<Chunk>> shards, wholes;
  std::vector<OptimizerState> shard_moments(2), whole_moments(2);
  for (int j = 0; j < 2; ++j) {
    shards.push_back(MakeChunk(j, 2));
    TakeShard(reference, *shards[j], &shard_moments[j]);
  }
  wholes.push_back(MakeChunk(0, 1));
  wholes.push_back(nullptr);
  GatherOnEveryMember(shards, shard_moments, wholes, whole_moments);
  const models::ParameterSet<float>& got = wholes[0]->params();
  const models::ParameterSet<float>& want = reference.chunk->params();
  EXPECT_TRUE(std::equal(got.values(), got.values() + got.size(), want.values()));
  EXPECT_EQ(whole_moments[0].m, reference.moments.m);
  EXPECT_TRUE(whole_moments[1].m.empty());
}

// Before the first update the shards hold no moments: the whole model holds none either.
TEST(ExpertGatherTest, ShardsWithoutMomentsLeaveTheWholeModelsEmpty) {
  const Reference reference;
  std::vector<std::unique_ptr<Chunk>> shards, wholes;
  std::vector<OptimizerState> shard_moments(2), whole_moments(2, reference.moments);
  for (int j = 0; j < 2; ++j) {
    shards.push_back(MakeChunk(j, 2));
    wholes.push_back(MakeChunk(0, 1));
    TakeShard(reference, *shards[j], nullptr);
  }
  GatherOnEveryMember(shards, shard_moments, wholes, whole_moments);
  for (int j = 0; j < 2; ++j) {
    EXPECT_TRUE(whole_moments[j].m.empty() && whole_moments[j].v.empty()) << "member " << j;
    EXPECT_EQ(wholes[j]->params().value("h.1.mlp.experts.3.c_fc.weight")[0],
              reference.chunk->params().value("h.1.mlp.experts.3.c_fc.weight")[0]);
  }
}

}  // namespace
}  // namespace stagehand::runtime
