// Tests for the shared training step: chunked == whole model after optimizer steps,
// bitwise determinism, the loss goes down.
#include "runtime/train/training.h"

#include <cmath>
#include <cstring>

#include "gtest/gtest.h"

namespace stagehand::runtime {
namespace {

std::vector<int32_t> SyntheticText() {
  std::string s;
  for (int i = 0; i < 200; ++i) s += "the quick brown fox jumps over the lazy dog. ";
  return std::vector<int32_t>(s.begin(), s.end());
}

struct TrainedModel {
  std::vector<std::unique_ptr<Chunk>> owned;
  std::vector<Chunk*> chunks;
  std::vector<OptimizerState> states;
  std::vector<double> losses;
};

TrainedModel Train(int num_chunks, int steps, int microbatches = 2) {
  models::GptConfig config = models::UniformGpt(3, 16, 2, 256, 16, 5);
  TrainedModel run;
  auto built = BuildChunks(config, num_chunks, models::ChunkOptions{2, 16, microbatches});
  EXPECT_TRUE(built.ok()) << built.status();
  run.owned = std::move(*built);
  for (auto& c : run.owned) run.chunks.push_back(c.get());
  static const std::vector<int32_t> data = SyntheticText();
  WindowSampler sampler(&data, 2, 16, 1);
  OptimizerConfig opt;
  opt.adamw.learning_rate = 3e-3;
  opt.adamw.weight_decay = 0.1;
  for (int step = 1; step <= steps; ++step) {
    auto loss = SequentialForwardBackward(run.chunks, sampler, step, microbatches);
    EXPECT_TRUE(loss.ok()) << loss.status();
    run.losses.push_back(*loss);
    OptimizerStep(run.chunks, run.states, opt, step);
  }
  return run;
}

TEST(TrainingTest, ChunkedTrainingMatchesSingleChunk) {
  TrainedModel whole = Train(1, 4), parts = Train(3, 4);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(whole.losses[i], parts.losses[i], 1e-5);
  auto a = CollectParameters(whole.chunks), b = CollectParameters(parts.chunks);
  ASSERT_EQ(a.size(), b.size());
  for (size_t t = 0; t < a.size(); ++t) {
    ASSERT_EQ(a[t].name, b[t].name);
    for (size_t i = 0; i < a[t].data.size(); ++i) {
      ASSERT_NEAR(a[t].data[i], b[t].data[i], 1e-5 * (1 + std::abs(a[t].data[i]))) << a[t].name;
    }
  }
  // The two copies of the tied embedding stay identical.
  const float* first = parts.chunks.front()->params().value("wte");
  const float* last = parts.chunks.back()->params().value("wte");
  for (int i = 0; i < 256 * 16; ++i) ASSERT_EQ(first[i], last[i]);
}

TEST(TrainingTest, SameSeedIsBitwiseIdentical) {
  TrainedModel a = Train(2, 3), b = Train(2, 3);
  auto pa = CollectParameters(a.chunks), pb = CollectParameters(b.chunks);
  for (size_t t = 0; t < pa.size(); ++t) ASSERT_EQ(pa[t].data, pb[t].data) << pa[t].name;
  EXPECT_EQ(a.losses, b.losses);
}

TEST(TrainingTest, LossGoesDown) {
  TrainedModel run = Train(1, 30);
  EXPECT_NEAR(run.losses.front(), std::log(256.0), 0.3);
  EXPECT_LT(run.losses.back(), run.losses.front() - 1.5);
}

TEST(LearningRateTest, WarmsUpLinearlyThenDecaysByCosineToTheFloor) {
  OptimizerConfig c;
  c.adamw.learning_rate = 1.0;
  EXPECT_EQ(LearningRateAt(c, 1), 1.0);  // no schedule: constant
  EXPECT_EQ(LearningRateAt(c, 1000), 1.0);
  c.schedule = LearningRateSchedule{10, 110, 0.1};
  EXPECT_DOUBLE_EQ(LearningRateAt(c, 1), 0.1);
  EXPECT_DOUBLE_EQ(LearningRateAt(c, 5), 0.5);
  EXPECT_DOUBLE_EQ(LearningRateAt(c, 10), 1.0);
  EXPECT_NEAR(LearningRateAt(c, 60), 0.55, 1e-12);  // halfway: the mean of peak and floor
  EXPECT_DOUBLE_EQ(LearningRateAt(c, 110), 0.1);
  EXPECT_DOUBLE_EQ(LearningRateAt(c, 500), 0.1);
  for (int s = 11; s <= 110; ++s) EXPECT_LE(LearningRateAt(c, s), LearningRateAt(c, s - 1));
}

TEST(AssignParametersTest, SetsEveryCopyAndNamesMismatches) {
  models::GptConfig config = models::UniformGpt(2, 8, 2, 256, 8, 3);
  auto a = BuildChunks(config, 2, models::ChunkOptions{1, 8, 1});
  config.seed = 4;
  auto b = BuildChunks(config, 1, models::ChunkOptions{1, 8, 1});
  ASSERT_TRUE(a.ok() && b.ok());
  std::vector<Chunk*> from = {(*a)[0].get(), (*a)[1].get()}, to = {(*b)[0].get()};
  std::map<std::string, NamedTensor> tensors;
  for (NamedTensor& t : CollectParameters(from)) tensors[t.name] = std::move(t);
  ASSERT_TRUE(AssignParameters(to, tensors).ok());
  for (const NamedTensor& t : CollectParameters(to))
    EXPECT_EQ(t.data, tensors.at(t.name).data) << t.name;
  // The other way round: the head's tied copy of wte is set too.
  ASSERT_TRUE(AssignParameters(from, tensors).ok());
  EXPECT_EQ(0, std::memcmp((*a)[1]->params().value("wte"), (*a)[0]->params().value("wte"),
                           sizeof(float) * 256 * 8));
  auto extra = tensors;
  extra["h.9.ln_1.weight"] = NamedTensor{"h.9.ln_1.weight", {8}, std::vector<float>(8)};
  EXPECT_NE(AssignParameters(to, extra).message().find("h.9.ln_1.weight matches no parameter"),
            std::string::npos);
  auto reshaped = tensors;
  reshaped["wpe"].shape = {4, 16};
  EXPECT_NE(AssignParameters(to, reshaped).message().find("tensor wpe has shape [4, 16]"),
            std::string::npos);
  tensors.erase("ln_f.bias");
  EXPECT_NE(AssignParameters(to, tensors).message().find("no tensor for parameter ln_f.bias"),
            std::string::npos);
}

}  // namespace
}  // namespace stagehand::runtime
