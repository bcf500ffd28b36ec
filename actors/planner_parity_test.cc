// Every planner of the zoo, a user's planner and CSV-loaded schedules train bitwise like the
// sequential run, for P in {2, 4} and M in {4, 8, 12}, V-shaped placements included; each
// plan is validated before it runs. Not a repeatability test (pipeline_parity_test.cc).
#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "actors/model_pipeline.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/dry_run.h"
#include "runtime/table_planner.h"

namespace stagehand::actors {
namespace {

// A tiny model with 8 layers: enough for 2P chunks at P = 4 (V shapes, interleaved v = 2).
constexpr int kSteps = 2, kB = 2, kT = 8, kLayers = 8;

const std::vector<int32_t>& Data() {
  static const std::vector<int32_t>* data = [] {
    std::string s;
    for (int i = 0; i < 60; ++i) s += "Planners reorder work; the sums stay the same. 0123456789\n";
    return new std::vector<int32_t>(s.begin(), s.end());
  }();
  return *data;
}

models::GptConfig Model() { return models::UniformGpt(kLayers, 16, 2, 256, kT, 11); }

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

// The single-chunk sequential run with M microbatches, computed once per M.
const Result& Sequential(int num_microbatches) {
  static std::map<int, Result>* cache = new std::map<int, Result>();
  auto it = cache->find(num_microbatches);
  if (it != cache->end()) return it->second;
  runtime::WindowSampler sampler(&Data(), kB, kT, 3);
  auto chunks = runtime::BuildChunks(Model(), 1, models::ChunkOptions{kB, kT, num_microbatches});
  EXPECT_TRUE(chunks.ok()) << chunks.status();
  std::vector<runtime::Chunk*> pointers = {(*chunks)[0].get()};
  std::vector<runtime::OptimizerState> states;
  Result r;
  for (int step = 1; step <= kSteps; ++step) {
    auto loss = runtime::SequentialForwardBackward(pointers, sampler, step, num_microbatches);
    EXPECT_TRUE(loss.ok()) << loss.status();
    r.losses.push_back(*loss);
    runtime::OptimizerStep(pointers, states, Optimizer(), step);
  }
  r.params = runtime::CollectParameters(pointers);
  return cache->emplace(num_microbatches, std::move(r)).first->second;
}

absl::StatusOr<Result> Pipelined(const runtime::PlannerDefinition& planner,
                                 const runtime::PlannerOptions& options) {
  // Before anything runs: the plan is complete, ordered, within memory and deadlock-free.
  if (absl::StatusOr<runtime::ScheduleTable> plan = runtime::ValidatePlanner(planner, options);
      !plan.ok()) {
    return plan.status();
  }
  runtime::WindowSampler sampler(&Data(), kB, kT, 3);
  ModelPipelineOptions o;
  o.model = Model();
  o.chunk = models::ChunkOptions{kB, kT, options.num_microbatches};
  o.planner = &planner;
  o.planner_options = options;
  o.optimizer = Optimizer();
  absl::StatusOr<ModelPipeline> pipeline = BuildModelPipeline(o, &sampler);
  if (!pipeline.ok()) return pipeline.status();
  Result r;
  for (int step = 1; step <= kSteps; ++step) {
    absl::StatusOr<StepOutcome> outcome = pipeline->pipeline->RunStep(step);
    if (!outcome.ok()) return outcome.status();
    r.losses.push_back(outcome->loss);
  }
  r.params = runtime::CollectParameters(pipeline->chunk_pointers());
  return r;
}

// Every parameter, by name, bit for bit.
void ExpectBitwiseEqual(const Result& actual, const Result& expected) {
  EXPECT_EQ(actual.losses, expected.losses);
  ASSERT_EQ(actual.params.size(), expected.params.size());
  for (size_t t = 0; t < actual.params.size(); ++t) {
    EXPECT_EQ(actual.params[t].name, expected.params[t].name);
    EXPECT_EQ(actual.params[t].data, expected.params[t].data) << actual.params[t].name;
  }
}

// "csv": zb_v's plan written as torch-format CSV text, read back and run as a table.
absl::StatusOr<std::unique_ptr<runtime::PlannerDefinition>> CsvRoundTrip(
    const runtime::PlannerOptions& options) {
  absl::StatusOr<const runtime::PlannerDefinition*> zb_v =
      runtime::PlannerRegistry::Default().Get("zb_v");
  if (!zb_v.ok()) return zb_v.status();
  absl::StatusOr<runtime::ScheduleTable> table = runtime::ValidatePlanner(**zb_v, options);
  if (!table.ok()) return table.status();
  absl::StatusOr<runtime::ScheduleTable> parsed =
      runtime::ParseScheduleCsv(runtime::FormatScheduleCsv(*table), "zb_v.csv");
  if (!parsed.ok()) return parsed.status();
  return runtime::MakeTablePlanner(*std::move(parsed), "zb_v.csv");
}

class PlannerParityTest : public testing::TestWithParam<std::tuple<std::string, int, int>> {};

TEST_P(PlannerParityTest, MatchesTheSequentialRunBitwise) {
  const auto& [name, stages, microbatches] = GetParam();
  const runtime::PlannerOptions options{stages, microbatches, 0};
  std::unique_ptr<runtime::PlannerDefinition> owned;
  const runtime::PlannerDefinition* planner = nullptr;
  if (name == "csv") {
    absl::StatusOr<std::unique_ptr<runtime::PlannerDefinition>> loaded = CsvRoundTrip(options);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    owned = *std::move(loaded);
    planner = owned.get();
  } else {
    absl::StatusOr<const runtime::PlannerDefinition*> found =
        runtime::PlannerRegistry::Default().Get(name);
    ASSERT_TRUE(found.ok()) << found.status();
    planner = *found;
  }
  absl::StatusOr<Result> result = Pipelined(*planner, options);
  if (name == "dualpipe_v" && microbatches < 2 * stages) {  // a documented limit
    EXPECT_THAT(result.status().message(),
                ::testing::HasSubstr("dualpipe_v needs num_microbatches >= 2 * num_stages"));
    return;
  }
  ASSERT_TRUE(result.ok()) << result.status();
  ExpectBitwiseEqual(*result, Sequential(microbatches));
}

INSTANTIATE_TEST_SUITE_P(
    Zoo, PlannerParityTest,
    testing::Combine(testing::Values("gpipe", "1f1b", "interleaved", "looped_bfs", "zb_h1",
                                     "zb_h2", "zb_v", "dualpipe_v", "example_backward_first",
                                     "csv"),
                     testing::Values(2, 4), testing::Values(4, 8, 12)),
    [](const testing::TestParamInfo<std::tuple<std::string, int, int>>& info) {
      std::string name = std::get<0>(info.param);
      for (char& c : name) {
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
      }
      return "P" + std::to_string(std::get<1>(info.param)) + "_M" +
             std::to_string(std::get<2>(info.param)) + "_" + name;
    });

std::string RunfilePath(const std::string& name) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  return std::string(srcdir == nullptr ? "." : srcdir) + "/stagehand/tests/golden/" + name;
}

// Schedules written by torch (Python's csv module), run as they are: DualPipeV with its
// OVERLAP_F_B pairs and mixed full / split backwards, and interleaved 1F1B with idle steps.
TEST(TorchScheduleParityTest, TorchWrittenSchedulesTrainBitwise) {
  for (const char* file : {"torch_dualpipev_p2_m4.csv", "torch_interleaved_p2_m4.csv"}) {
    absl::StatusOr<std::unique_ptr<runtime::PlannerDefinition>> planner =
        runtime::LoadSchedulePlanner(RunfilePath(file));
    ASSERT_TRUE(planner.ok()) << planner.status();
    absl::StatusOr<Result> result = Pipelined(**planner, {2, 4, 0});
    ASSERT_TRUE(result.ok()) << file << ": " << result.status();
    ExpectBitwiseEqual(*result, Sequential(4));
  }
}

}  // namespace
}  // namespace stagehand::actors
