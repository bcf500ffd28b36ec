// The parity check: a plan trained on the actor runtime against the sequential run, bitwise.
// Not a fixture: plain functions, so that any test (gtest or not) can call them.
#include "actors/testing/planner_parity.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "actors/model_pipeline.h"
#include "actors/testing/later_completion_work.h"
#include "models/model_config.h"
#include "runtime/dry_run.h"
#include "runtime/util/status_macros.h"

namespace stagehand::testing {
namespace {

constexpr int kB = 2, kT = 8, kMinLayers = 8;

const std::vector<int32_t>& Data() {
  static const std::vector<int32_t>* data = [] {
    std::string s;
    for (int i = 0; i < 60; ++i) s += "Planners reorder work; the sums stay the same. 0123456789\n";
    return new std::vector<int32_t>(s.begin(), s.end());
  }();
  return *data;
}

// Where each word of Data() begins (ParityOptions::packed_documents).
const std::vector<int64_t>& Documents() {
  static const std::vector<int64_t>* documents = [] {
    auto* starts = new std::vector<int64_t>{0};
    const std::vector<int32_t>& data = Data();
    for (size_t i = 1; i < data.size(); ++i) {
      if (data[i - 1] == ' ' || data[i - 1] == '\n') starts->push_back(static_cast<int64_t>(i));
    }
    return starts;
  }();
  return *documents;
}

// The sampler of both runs, and the chunk options.
runtime::WindowSampler Sampler(bool packed, int64_t microbatch_tokens) {
  runtime::WindowSampler sampler(&Data(), kB, kT, 3);
  if (packed) sampler.SetDocuments(&Documents());
  if (microbatch_tokens > 0) {
    sampler.SetSeqLenPolicy(runtime::SeqLenPolicy::kVariable, microbatch_tokens);
  }
  return sampler;
}

models::ChunkOptions ChunkOptionsOf(int num_microbatches, bool packed) {
  models::ChunkOptions o{kB, kT, num_microbatches};
  o.reset_position_ids = packed;
  return o;
}

models::GptConfig Model(int layers) { return models::UniformGpt(layers, 16, 2, 256, kT, 11); }

// What identifies a model for the cache: its canonical config file form.
std::string ModelKey(const models::GptConfig& model) {
  return models::ModelConfigToJson(model).dump();
}

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
  int64_t optimizer_bytes = 0;     // pipelined runs: replica 0's, summed over its stages
  std::vector<StageState> stages;  // pipelined runs
};

// The single-chunk sequential run, computed once per (microbatches, model, steps, packing,
// microbatch token budget).
absl::StatusOr<Result> Sequential(int num_microbatches, const models::GptConfig& model, int steps,
                                  bool packed, int64_t microbatch_tokens) {
  using Key = std::tuple<int, std::string, int, bool, int64_t>;
  static auto* cache = new std::map<Key, Result>();
  const Key key{num_microbatches, ModelKey(model), steps, packed, microbatch_tokens};
  if (auto it = cache->find(key); it != cache->end()) return it->second;
  const runtime::WindowSampler sampler = Sampler(packed, microbatch_tokens);
  auto chunks = runtime::BuildChunks(model, 1, ChunkOptionsOf(num_microbatches, packed));
  if (!chunks.ok()) return chunks.status();
  std::vector<runtime::Chunk*> pointers = {(*chunks)[0].get()};
  std::vector<runtime::OptimizerState> states;
  Result r;
  for (int step = 1; step <= steps; ++step) {
    absl::StatusOr<double> loss =
        runtime::SequentialForwardBackward(pointers, sampler, step, num_microbatches);
    if (!loss.ok()) return loss.status();
    r.losses.push_back(*loss);
    runtime::OptimizerStep(pointers, states, Optimizer(), step);
  }
  r.params = runtime::CollectParameters(pointers);
  return cache->emplace(key, std::move(r)).first->second;
}

absl::StatusOr<Result> Pipelined(const runtime::PlannerDefinition& planner,
                                 const ParityOptions& parity, const models::GptConfig& model) {
  const runtime::PlannerOptions& options = parity.planner;
  const int steps = parity.steps;
  runtime::WindowSampler sampler = Sampler(parity.packed_documents, parity.microbatch_tokens);
  actors::ModelPipelineOptions o;
  o.dp = parity.dp;
  o.grad_bucket_mb = parity.grad_bucket_mb;
  o.zero = parity.zero;
  o.ep = parity.ep;
  o.lane_depth = parity.lane_depth;
  if (parity.completes_later) {
    o.stage_work = [](const actors::ModelPipelineOptions::StageWorkSpec& w)
        -> absl::StatusOr<std::unique_ptr<runtime::StageWork>> {
      return std::make_unique<LaterCompletionWork>(
          std::make_unique<runtime::ModelStageWork>(w.held, w.num_chunks, w.sampler,
                                                    w.num_microbatches, w.optimizer,
                                                    runtime::StageFaults{}, w.place),
          std::chrono::microseconds(200));
    };
  }
  o.model = model;
  o.chunk = ChunkOptionsOf(options.num_microbatches, parity.packed_documents);
  o.planner = &planner;
  o.planner_options = options;
  o.optimizer = Optimizer();
  absl::StatusOr<actors::ModelPipeline> pipeline = actors::BuildModelPipeline(o, &sampler);
  if (!pipeline.ok()) return pipeline.status();
  Result r;
  for (int step = 1; step <= steps; ++step) {
    absl::StatusOr<actors::StepOutcome> outcome = pipeline->pipeline->RunStep(step);
    if (!outcome.ok()) return outcome.status();
    r.losses.push_back(outcome->loss);
  }
  r.params = runtime::CollectParameters(pipeline->chunk_pointers());
  const runtime::StepSpec& spec = pipeline->pipeline->spec();
  for (int s = 0; s < spec.num_stages; ++s) {
    absl::StatusOr<int64_t> bytes = pipeline->pipeline->OptimizerStateBytes(s);
    if (!bytes.ok()) return bytes.status();
    r.optimizer_bytes += *bytes;
    StageState& stage = r.stages.emplace_back();
    stage.optimizer_bytes = *bytes;
    for (int c = 0; c < spec.num_chunks; ++c) {
      if (spec.chunk_to_stage[c] != s) continue;
      for (const models::ParamInfo& info : pipeline->chunks[c]->params().infos()) {
        (info.expert >= 0 ? stage.expert_floats : stage.dense_floats) += info.size;
      }
    }
  }
  // Every replica applied the same update to the same sum: bitwise the same parameters (with
  // --ep, each tensor it holds is the whole model's).
  std::map<std::string, const std::vector<float>*> whole;
  for (const runtime::NamedTensor& t : r.params) whole[t.name] = &t.data;
  for (int d = 0; d < parity.dp; ++d) {
    for (const runtime::NamedTensor& t : runtime::CollectParameters(pipeline->ReplicaChunks(d))) {
      auto it = whole.find(t.name);
      if (it == whole.end() || *it->second != t.data) {
        return absl::InternalError(
            absl::StrCat("replica ", d, "'s ", t.name, " differs from the whole model's"));
      }
    }
  }
  return r;
}

// Bitwise when tolerance is 0, else within `tolerance` relative.
bool Close(double a, double b, double tolerance) {
  if (tolerance == 0) return a == b;
  return std::abs(a - b) <= tolerance * std::max({std::abs(a), std::abs(b), 1e-3});
}

::testing::AssertionResult Compare(const Result& actual, const Result& expected, double tolerance) {
  for (std::size_t i = 0; i < std::max(actual.losses.size(), expected.losses.size()); ++i) {
    if (i >= actual.losses.size() || i >= expected.losses.size() ||
        !Close(actual.losses[i], expected.losses[i], tolerance)) {
      return ::testing::AssertionFailure() << "the loss of step " << i + 1 << " differs";
    }
  }
  if (actual.params.size() != expected.params.size()) {
    return ::testing::AssertionFailure()
           << actual.params.size() << " parameters, expected " << expected.params.size();
  }
  for (std::size_t t = 0; t < actual.params.size(); ++t) {
    if (actual.params[t].name != expected.params[t].name) {
      return ::testing::AssertionFailure() << "parameter " << t << " is " << actual.params[t].name
                                           << ", expected " << expected.params[t].name;
    }
    if (tolerance == 0 && actual.params[t].data != expected.params[t].data) {
      return ::testing::AssertionFailure() << "parameter " << actual.params[t].name
                                           << " differs from the sequential run's (not bitwise)";
    }
    const std::vector<float>& a = actual.params[t].data;
    const std::vector<float>& e = expected.params[t].data;
    // Normwise per tensor, ||a - e|| <= tolerance ||e||: a gradient that is zero in exact
    // arithmetic (a key bias's) leaves float noise that reassociation changes completely,
    // and AdamW turns that noise into steps of its own.
    double diff = 0, norm = 0;
    for (std::size_t k = 0; tolerance > 0 && k < std::min(a.size(), e.size()); ++k) {
      diff += (static_cast<double>(a[k]) - e[k]) * (static_cast<double>(a[k]) - e[k]);
      norm += static_cast<double>(e[k]) * e[k];
    }
    if (tolerance > 0 && std::sqrt(diff) > tolerance * std::sqrt(norm)) {
      return ::testing::AssertionFailure()
             << "parameter " << actual.params[t].name << " differs from the sequential run's by "
             << std::sqrt(diff / std::max(norm, 1e-300)) << " relative (tolerance " << tolerance
             << ")";
    }
  }
  return ::testing::AssertionSuccess();
}

}  // namespace

::testing::AssertionResult TrainsLikeSequential(const runtime::PlannerDefinition& definition,
                                                const ParityOptions& options) {
  // Before anything runs: the plan is complete, ordered, within memory and deadlock-free.
  absl::StatusOr<runtime::StepSpec> spec = definition.MakeSpec(options.planner);
  if (!spec.ok()) return ::testing::AssertionFailure() << spec.status();
  if (absl::StatusOr<runtime::ScheduleTable> plan =
          runtime::ValidatePlanner(definition, options.planner);
      !plan.ok()) {
    return ::testing::AssertionFailure() << plan.status();
  }
  const int layers = options.layers > 0 ? options.layers : std::max(kMinLayers, spec->num_chunks);
  const models::GptConfig model = options.model != nullptr ? *options.model : Model(layers);
  absl::StatusOr<Result> expected =
      Sequential(options.dp * options.planner.num_microbatches, model, options.steps,
                 options.packed_documents, options.microbatch_tokens);
  if (!expected.ok()) return ::testing::AssertionFailure() << expected.status();
  absl::StatusOr<Result> actual = Pipelined(definition, options, model);
  if (!actual.ok()) return ::testing::AssertionFailure() << actual.status();
  return Compare(*actual, *expected, options.tolerance)
         << " (" << definition.name() << ", P = " << options.planner.num_stages
         << ", M = " << options.planner.num_microbatches << ", dp = " << options.dp
         << ", ep = " << options.ep << ")";
}

::testing::AssertionResult ShardedOptimizerTrainsLikeUnsharded(
    const runtime::PlannerDefinition& definition, const ParityOptions& options) {
  absl::StatusOr<runtime::StepSpec> spec = definition.MakeSpec(options.planner);
  if (!spec.ok()) return ::testing::AssertionFailure() << spec.status();
  const int layers = options.layers > 0 ? options.layers : std::max(kMinLayers, spec->num_chunks);
  const models::GptConfig model = options.model != nullptr ? *options.model : Model(layers);
  ParityOptions sharded = options, unsharded = options;
  sharded.zero = 1;
  unsharded.zero = 0;
  absl::StatusOr<Result> expected = Pipelined(definition, unsharded, model);
  if (!expected.ok()) return ::testing::AssertionFailure() << expected.status();
  absl::StatusOr<Result> actual = Pipelined(definition, sharded, model);
  if (!actual.ok()) return ::testing::AssertionFailure() << actual.status();
  // Sharding happened: replica 0 holds its owned elements' moments only (its shard of each
  // chunk is at most one element over n / dp; with --ep, of its dense and of its expert elements
  // each at most one over 1/dp and 1/edp of them, so at most one over 1/edp of what it held).
  const int edp = options.dp / std::max(1, options.ep);
  const int64_t most =
      expected->optimizer_bytes / edp + 8 * int64_t{spec->num_chunks} * (options.ep > 1 ? 2 : 1);
  if (expected->optimizer_bytes == 0 || actual->optimizer_bytes > most) {
    return ::testing::AssertionFailure()
           << "replica 0 holds " << actual->optimizer_bytes << " bytes of optimizer state with "
           << "--zero=1 and " << expected->optimizer_bytes << " without: not sharded by "
           << options.dp << (options.ep > 1 ? " (dense) and edp (experts)" : "");
  }
  return Compare(*actual, *expected, options.tolerance)
         << " (--zero=1 against --zero=0: " << definition.name()
         << ", P = " << options.planner.num_stages << ", M = " << options.planner.num_microbatches
         << ", dp = " << options.dp << ")";
}

absl::StatusOr<std::vector<StageState>> PipelinedStageStates(
    const runtime::PlannerDefinition& definition, const ParityOptions& options) {
  ASSIGN_OR_RETURN(const runtime::StepSpec spec, definition.MakeSpec(options.planner));
  const int layers = options.layers > 0 ? options.layers : std::max(kMinLayers, spec.num_chunks);
  const models::GptConfig model = options.model != nullptr ? *options.model : Model(layers);
  ASSIGN_OR_RETURN(Result r, Pipelined(definition, options, model));
  return r.stages;
}

void ExpectTrainsLikeSequential(const runtime::PlannerDefinition& definition,
                                const runtime::PlannerOptions& options) {
  EXPECT_TRUE(TrainsLikeSequential(definition, ParityOptions{options}));
}

}  // namespace stagehand::testing
