// Tests for the optimizer pieces: the one tied-gradient sum (holder order, placement
// independence), SumsForHolders, norms that count a tied weight once, and AdamW's state.
// Not a training test: training_test.cc checks whole steps.
#include "runtime/train/optimizer.h"

#include <cmath>
#include <map>
#include <memory>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/train/training.h"

namespace stagehand::runtime {
namespace {

using ::testing::ElementsAre;

TEST(SumTiedGradientsTest, SumsEachNameOverHoldersInChunkOrderWhateverThePartsOrder) {
  // 0.1f + 0.2f + 0.3f in chunk order differs in float from other association orders.
  const TiedGradientMap stage_a = {{3, {{"wte", {0.3f, 1.f}}}}, {0, {{"wte", {0.1f, 2.f}}}}};
  const TiedGradientMap stage_b = {{1, {{"wte", {0.2f, 4.f}}}}};
  const std::map<std::string, Payload> ab = SumTiedGradients({&stage_a, &stage_b});
  const std::map<std::string, Payload> ba = SumTiedGradients({&stage_b, &stage_a});
  const float expected = (0.1f + 0.2f) + 0.3f;
  ASSERT_EQ(ab.count("wte"), 1u);
  EXPECT_EQ(ab.at("wte")[0], expected);
  EXPECT_EQ(ab.at("wte")[1], 7.f);
  EXPECT_EQ(ab, ba);
}

TEST(SumTiedGradientsTest, EveryHolderGetsTheSumOfWhatItHolds) {
  const TiedGradientMap holders = {{0, {{"wte", {1.f}}}}, {5, {{"wte", {2.f}}}}};
  const TiedGradientMap back = SumsForHolders(holders, SumTiedGradients({&holders}));
  EXPECT_THAT(back.at(0).at("wte"), ElementsAre(3.f));
  EXPECT_THAT(back.at(5).at("wte"), ElementsAre(3.f));
  EXPECT_EQ(back.size(), 2u);
}

struct Model {
  std::vector<std::unique_ptr<Chunk>> owned;
  std::map<int, Chunk*> chunks;
};

Model Build(int num_chunks, bool tied_head = true) {
  Model model;
  models::GptConfig config = models::UniformGpt(2, 8, 2, 32, 8, 7);
  config.tied_head = tied_head;
  auto built = BuildChunks(config, num_chunks, models::ChunkOptions{1, 8, 1});
  EXPECT_TRUE(built.ok()) << built.status();
  model.owned = std::move(*built);
  for (size_t k = 0; k < model.owned.size(); ++k) model.chunks[k] = model.owned[k].get();
  return model;
}

// Fills every gradient with a distinct value.
void FillGradients(Model& model) {
  float x = 0.001f;
  for (auto& [index, chunk] : model.chunks) {
    for (int64_t i = 0; i < chunk->params().size(); ++i) chunk->params().grads()[i] = (x += 0.001f);
  }
}

TEST(GatherTiedGradientsTest, OnlyTheEmbeddingIsTiedAcrossChunks) {
  Model two = Build(2);
  FillGradients(two);
  const TiedGradientMap tied = GatherTiedGradients(two.chunks, 2);
  ASSERT_EQ(tied.size(), 2u);  // the first chunk's embedding and the last chunk's head copy
  EXPECT_EQ(tied.at(0).count("wte"), 1u);
  EXPECT_EQ(tied.at(1).count("wte"), 1u);
  EXPECT_EQ(tied.at(0).at("wte").size(), 32u * 8u);
  Model one = Build(1);
  EXPECT_TRUE(GatherTiedGradients(one.chunks, 1).empty());  // folded inside the chunk
}

// A head with its own lm_head.weight shares nothing with the embedding: no chunk sends its
// wte gradient to be summed (the cluster's gates expect none).
TEST(GatherTiedGradientsTest, AnUntiedHeadTiesNothing) {
  Model untied = Build(2, /*tied_head=*/false);
  FillGradients(untied);
  EXPECT_TRUE(GatherTiedGradients(untied.chunks, 2).empty());
}

TEST(SquaredGradientNormsTest, SkipTiedCopiesSoATiedWeightCountsOnce) {
  Model two = Build(2);
  FillGradients(two);
  const std::map<int, std::vector<double>> norms = SquaredGradientNorms(two.chunks);
  size_t counted = 0, held = 0;
  for (auto& [index, chunk] : two.chunks) {
    held += chunk->params().infos().size();
    counted += norms.at(index).size();
  }
  EXPECT_EQ(counted + 1, held);  // the head's copy of wte is not counted
  double global = 0;
  const double scale = ClipScaleFromSquaredNorms(norms, 1e-3, &global);
  EXPECT_GT(global, 1e-3);
  EXPECT_NEAR(scale * global, 1e-3, 1e-9);
}

TEST(ApplyAdamWTest, SizesTheStateMovesTheWeightsAndZeroesTheGradients) {
  Model one = Build(1);
  FillGradients(one);
  models::ParameterSet<float>& params = one.chunks.at(0)->params();
  const std::vector<float> before(params.values(), params.values() + params.size());
  OptimizerState state;
  OptimizerConfig config;
  config.adamw.learning_rate = 1e-2;
  ApplyAdamW(params, state, config, 1, 1.0);
  ASSERT_EQ(static_cast<int64_t>(state.m.size()), params.size());
  int moved = 0;
  for (int64_t i = 0; i < params.size(); ++i) {
    moved += params.values()[i] != before[i];
    ASSERT_EQ(params.grads()[i], 0.f);
  }
  EXPECT_EQ(moved, params.size());
}

}  // namespace
}  // namespace stagehand::runtime
