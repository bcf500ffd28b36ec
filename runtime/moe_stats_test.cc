// Tests for MoeTokenCounts: the balance measures, a step's counts taken from real chunks, and
// a short real training run in which the load-balancing loss evens the tokens per expert.
#include "runtime/moe_stats.h"

#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/test_configs.h"
#include "runtime/train/training.h"

namespace stagehand::runtime {
namespace {

TEST(MoeStatsTest, BalanceMeasures) {
  EXPECT_EQ(CoefficientOfVariation({5, 5, 5, 5}), 0.0);
  EXPECT_NEAR(CoefficientOfVariation({0, 10}), 1.0, 1e-15);
  EXPECT_EQ(CoefficientOfVariation({0, 0}), 0.0);
  EXPECT_EQ(MaxMinRatio({4, 2, 8}), 4.0);
  EXPECT_EQ(MaxMinRatio({4, 0}), std::numeric_limits<double>::infinity());
  EXPECT_EQ(MaxMinRatio({}), 0.0);
}

const std::vector<int32_t>& Text() {
  static const std::vector<int32_t>* text = [] {
    std::string s;
    for (int i = 0; i < 80; ++i) {
      s += "Experts share the tokens; the router learns where each one goes. ";
      s += std::to_string(i * 7919 % 1000) + "\n";
    }
    return new std::vector<int32_t>(s.begin(), s.end());
  }();
  return *text;
}

constexpr int kB = 4, kT = 16, kM = 2;

// A 2-layer Llama-style model whose second layer is MoE: 8 experts, top-2, dropless.
models::GptConfig Model(double aux_loss_coeff) {
  models::GptConfig c = models::testing::LlamaStyle(2, 32, 4, 4, 64, kT, 5);
  c.layers[1].mlp = models::MlpKind::kMoe;
  c.layers[1].ffn_hidden = 0;
  c.layers[1].moe = models::MoeSpec{8, 2, 32, 0, 0.0, aux_loss_coeff, 0.0};
  return c;
}

struct TrainedRun {
  MoeTokenCounts counts;
  std::vector<double> losses;
};

// Trains `steps` sequential steps and returns the counts of the steps after `skip`.
TrainedRun Train(const models::GptConfig& model, int steps, int skip) {
  WindowSampler sampler(&Text(), kB, kT, 17);
  auto chunks = BuildChunks(model, 2, models::ChunkOptions{kB, kT, kM});
  EXPECT_TRUE(chunks.ok()) << chunks.status();
  std::vector<Chunk*> pointers;
  for (auto& c : *chunks) pointers.push_back(c.get());
  OptimizerConfig optimizer;
  optimizer.adamw.learning_rate = 1e-2;
  std::vector<OptimizerState> states;
  TrainedRun run;
  for (int step = 1; step <= steps; ++step) {
    absl::StatusOr<double> loss = SequentialForwardBackward(pointers, sampler, step, kM);
    EXPECT_TRUE(loss.ok()) << loss.status();
    run.losses.push_back(loss.ok() ? *loss : 0.0);
    OptimizerStep(pointers, states, optimizer, step);
    if (step > skip) {
      run.counts.AddStep(pointers);
    } else {
      MoeTokenCounts ignored;
      ignored.AddStep(pointers);
    }
  }
  return run;
}

TEST(MoeStatsTest, AStepsCountsComeFromEveryChunkAndEveryMicrobatch) {
  const TrainedRun run = Train(Model(0.01), 2, 1);
  ASSERT_EQ(run.counts.totals().size(), 1u);
  const models::MoeLayerStats& layer = run.counts.totals().at(1);
  int64_t choices = 0;
  for (int64_t n : layer.tokens_per_expert) choices += n;
  EXPECT_EQ(choices, int64_t{kM} * kB * kT * 2);  // one step, top-2
  EXPECT_EQ(layer.microbatches, kM);
  EXPECT_EQ(layer.dropped, 0);  // dropless
  const std::vector<std::string> lines = run.counts.SummaryLines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0], ::testing::MatchesRegex(
                            "tokens per expert: layer 1 \\[[0-9 ]+\\] max/min [0-9.inf]+ cv "
                            "[0-9.]+ dropped 0.0%, per microbatch: balance loss [0-9.]+ aux "
                            "loss [0-9.e-]+"));
}

// The load-balancing loss measurably evens the routing: the same seed and data trained with
// coefficient 0 and 0.1; the spread of tokens per expert over the later steps shrinks.
TEST(MoeStatsTest, LoadBalancingLossEvensTokensPerExpert) {
  constexpr int kSteps = 30, kSkip = 15;
  const TrainedRun plain = Train(Model(0.0), kSteps, kSkip);
  const TrainedRun balanced = Train(Model(0.1), kSteps, kSkip);
  const std::vector<int64_t>& a = plain.counts.totals().at(1).tokens_per_expert;
  const std::vector<int64_t>& b = balanced.counts.totals().at(1).tokens_per_expert;
  std::printf("coefficient 0:   %s\ncoefficient 0.1: %s\n", plain.counts.SummaryLines()[0].c_str(),
              balanced.counts.SummaryLines()[0].c_str());
  std::printf("final loss: %.4f vs %.4f\n", plain.losses.back(), balanced.losses.back());
  EXPECT_LT(CoefficientOfVariation(b), 0.5 * CoefficientOfVariation(a));
  EXPECT_LT(MaxMinRatio(b), MaxMinRatio(a));
  // The balance loss the summary reports falls with it (1 is perfectly even).
  const models::MoeLayerStats& pa = plain.counts.totals().at(1);
  const models::MoeLayerStats& ba = balanced.counts.totals().at(1);
  EXPECT_LT(ba.balance / ba.microbatches, pa.balance / pa.microbatches);
}

}  // namespace
}  // namespace stagehand::runtime
