// The heart of the suite: a pipelined run, for every planner and stage count, matches the
// sequential single-chunk run of the same model and data, and is bitwise repeatable.
#include <cmath>

#include "actors/model_pipeline.h"
#include "gtest/gtest.h"

namespace stagehand::actors {
namespace {

constexpr int kSteps = 5, kM = 8, kB = 2, kT = 16;

const std::vector<int32_t>& Data() {
  static const std::vector<int32_t>* data = [] {
    std::string s;
    for (int i = 0; i < 100; ++i) s += "Pipelines of actors train the same model. 0123456789\n";
    return new std::vector<int32_t>(s.begin(), s.end());
  }();
  return *data;
}

models::GptConfig Model() { return models::UniformGpt(4, 32, 2, 256, kT, 7); }

runtime::OptimizerConfig Optimizer() {
  runtime::OptimizerConfig o;
  o.adamw.learning_rate = 1e-3;
  o.adamw.weight_decay = 0.1;
  o.grad_clip = 1.0;
  return o;
}

struct Result {
  std::vector<double> losses;
  std::vector<runtime::NamedTensor> params;
};

Result Sequential() {
  runtime::WindowSampler sampler(&Data(), kB, kT, 3);
  auto chunks = runtime::BuildChunks(Model(), 1, models::ChunkOptions{kB, kT, kM});
  EXPECT_TRUE(chunks.ok());
  std::vector<runtime::Chunk*> ptrs = {(*chunks)[0].get()};
  std::vector<runtime::OptimizerState> states;
  Result r;
  for (int step = 1; step <= kSteps; ++step) {
    auto loss = runtime::SequentialForwardBackward(ptrs, sampler, step, kM);
    EXPECT_TRUE(loss.ok());
    r.losses.push_back(*loss);
    runtime::OptimizerStep(ptrs, states, Optimizer(), step);
  }
  r.params = runtime::CollectParameters(ptrs);
  return r;
}

Result Pipelined(const std::string& planner, int stages) {
  runtime::WindowSampler sampler(&Data(), kB, kT, 3);
  ModelPipelineOptions o;
  o.model = Model();
  o.chunk = models::ChunkOptions{kB, kT, kM};
  auto def = runtime::PlannerRegistry::Default().Get(planner);
  EXPECT_TRUE(def.ok()) << def.status();
  o.planner = *def;
  o.planner_options = runtime::PlannerOptions{stages, kM, 0};
  o.optimizer = Optimizer();
  auto mp = BuildModelPipeline(o, &sampler);
  EXPECT_TRUE(mp.ok()) << mp.status();
  Result r;
  for (int step = 1; step <= kSteps; ++step) {
    auto outcome = mp->pipeline->RunStep(step);
    EXPECT_TRUE(outcome.ok()) << outcome.status();
    if (!outcome.ok()) break;
    r.losses.push_back(outcome->loss);
  }
  r.params = runtime::CollectParameters(mp->chunk_pointers());
  return r;
}

double MaxRelativeDifference(const Result& a, const Result& b) {
  double worst = 0;
  EXPECT_EQ(a.params.size(), b.params.size());
  for (size_t t = 0; t < a.params.size() && t < b.params.size(); ++t) {
    EXPECT_EQ(a.params[t].name, b.params[t].name);
    for (size_t i = 0; i < a.params[t].data.size(); ++i) {
      double x = a.params[t].data[i], y = b.params[t].data[i];
      worst = std::max(worst, std::abs(x - y) / std::max(1e-3, std::abs(x)));
    }
  }
  return worst;
}

class ParityTest : public testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(ParityTest, MatchesSequentialRunAndRepeatsBitwise) {
  auto [planner, stages] = GetParam();
  static const Result reference = Sequential();
  Result a = Pipelined(planner, stages);
  ASSERT_EQ(a.losses.size(), reference.losses.size());
  for (int i = 0; i < kSteps; ++i)
    EXPECT_NEAR(a.losses[i], reference.losses[i], 1e-5) << "step " << i + 1;
  EXPECT_LT(MaxRelativeDifference(a, reference), 1e-5);
  EXPECT_EQ(MaxRelativeDifference(a, reference), 0.0);
  Result b = Pipelined(planner, stages);
  EXPECT_EQ(a.losses, b.losses);
  for (size_t t = 0; t < a.params.size(); ++t)
    ASSERT_EQ(a.params[t].data, b.params[t].data) << a.params[t].name;
}

INSTANTIATE_TEST_SUITE_P(Planners, ParityTest,
                         testing::Combine(testing::Values("gpipe", "1f1b"),
                                          testing::Values(1, 2, 4)),
                         [](const auto& info) {
                           return std::get<0>(info.param) == "1f1b"
                                      ? "OneFOneB_P" + std::to_string(std::get<1>(info.param))
                                      : "GPipe_P" + std::to_string(std::get<1>(info.param));
                         });

}  // namespace
}  // namespace stagehand::actors
