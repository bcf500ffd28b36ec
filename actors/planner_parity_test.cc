// Every planner of the zoo, a user's planner and CSV-loaded schedules (torch's compute_only and
// compute_comms formats) train bitwise like the sequential run, for P in {2, 4} and M in
// {4, 8, 12}, V-shaped placements and 8 ranks included; each plan is validated before it runs.
// Not a repeatability test (pipeline_parity_test.cc); the check is actors/testing's.
#include "actors/testing/planner_parity.h"

#include <cctype>
#include <cstdlib>
#include <memory>
#include <set>
#include <string>
#include <tuple>

#include "actors/model_pipeline.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/test_configs.h"
#include "runtime/collectives/collective.h"
#include "runtime/dry_run.h"
#include "runtime/plan_validation.h"
#include "runtime/table_planner.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::actors {
namespace {

using stagehand::testing::ExpectTrainsLikeSequential;
using stagehand::testing::IsOk;
using stagehand::testing::StatusIs;
using stagehand::testing::TrainsLikeSequential;
using ::testing::HasSubstr;

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

class PlannerParityTest : public ::testing::TestWithParam<std::tuple<std::string, int, int>> {};

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
  if (name == "dualpipe_v" && microbatches < 2 * stages) {  // a documented limit
    EXPECT_THAT(std::string(TrainsLikeSequential(*planner, {options}).message()),
                ::testing::HasSubstr("dualpipe_v needs num_microbatches >= 2 * num_stages"));
    return;
  }
  ExpectTrainsLikeSequential(*planner, options);
}

INSTANTIATE_TEST_SUITE_P(
    Zoo, PlannerParityTest,
    ::testing::Combine(::testing::Values("gpipe", "1f1b", "interleaved", "looped_bfs", "zb_h1",
                                         "zb_h2", "zb_v", "dualpipe_v", "adaptive",
                                         "example_backward_first", "csv"),
                       ::testing::Values(2, 4), ::testing::Values(4, 8, 12)),
    [](const ::testing::TestParamInfo<std::tuple<std::string, int, int>>& info) {
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
    EXPECT_TRUE(TrainsLikeSequential(**planner, {{2, 4, 0}})) << file;
  }
}

// torchtitan's lowered format (SEND/RECV/UNSHARD/RESHARD/REDUCE_GRAD cells): interleaved 1F1B
// on 8 ranks, 16 microbatches, 16 chunks of a 16-layer model.
TEST(TorchScheduleParityTest, AComputeCommsScheduleOnEightRanksTrainsBitwise) {
  absl::StatusOr<std::unique_ptr<runtime::PlannerDefinition>> planner =
      runtime::LoadSchedulePlanner(RunfilePath("torch_comms_interleaved_p8_m16.csv"));
  ASSERT_TRUE(planner.ok()) << planner.status();
  ExpectTrainsLikeSequential(**planner, {8, 16, 0});
}

// Rank 0 runs chunk 0's W's in microbatch order 2, 0, 1, 3 (or, as the control, 0, 1, 2, 3).
std::string SwappedWeights(bool swapped) {
  return std::string("0F0,0F1,0F2,0F3,0I0,0I1,0I2,0I3,") +
         (swapped ? "0W2,0W0,0W1,0W3" : "0W0,0W1,0W2,0W3") +
         "\r\n1F0,1F1,1F2,1F3,1I0,1W0,1I1,1W1,1I2,1W2,1I3,1W3\r\n";
}

TEST(BitwiseParityWarningTest, APlanTheWarningNamesValidatesButIsNotBitwise) {
  for (bool swapped : {false, true}) {
    absl::StatusOr<runtime::ScheduleTable> table =
        runtime::ParseScheduleCsv(SwappedWeights(swapped));
    ASSERT_TRUE(table.ok()) << table.status();
    EXPECT_EQ(runtime::BitwiseParityWarning(*table).has_value(), swapped);
    absl::StatusOr<std::unique_ptr<runtime::PlannerDefinition>> planner =
        runtime::MakeTablePlanner(*table, "w_order.csv");
    ASSERT_TRUE(planner.ok()) << planner.status();  // it validates either way
    const ::testing::AssertionResult parity = TrainsLikeSequential(**planner, {{2, 4, 0}});
    if (swapped) {
      EXPECT_THAT(std::string(parity.message()),
                  ::testing::HasSubstr("differs from the sequential run's (not bitwise)"));
    } else {
      EXPECT_TRUE(parity);
    }
  }
}

// Llama-style and heterogeneous models pipeline like the sequential run too: GQA, RoPE,
// RMSNorm, SwiGLU, linear replacements, missing parts and an untied head, under plain,
// V-shaped and interleaved placements.
// Packed documents (per-document causal masks, positions restarting per document, crossing
// targets masked): every planner of the zoo at P=4 trains bitwise like the sequential run, the
// learned-position GPT and (for two planners) the RoPE Llama-style model.
models::GptConfig TinyLlama();

TEST(PackedDocumentsParityTest, EveryPlannerAtFourStagesMatchesTheSequentialRunBitwise) {
  const models::GptConfig llama = TinyLlama();
  for (const char* name : {"gpipe", "1f1b", "interleaved", "looped_bfs", "zb_h1", "zb_h2", "zb_v",
                           "dualpipe_v", "adaptive", "example_backward_first"}) {
    absl::StatusOr<const runtime::PlannerDefinition*> planner =
        runtime::PlannerRegistry::Default().Get(name);
    ASSERT_TRUE(planner.ok()) << planner.status();
    stagehand::testing::ParityOptions parity{runtime::PlannerOptions{4, 8, 0}};
    parity.packed_documents = true;
    EXPECT_TRUE(TrainsLikeSequential(**planner, parity)) << name;
    if (std::string(name) == "1f1b" || std::string(name) == "zb_v") {
      parity.model = &llama;
      EXPECT_TRUE(TrainsLikeSequential(**planner, parity)) << name << " (Llama-style)";
    }
  }
}

models::GptConfig TinyLlama() { return models::testing::LlamaStyle(8, 16, 4, 2, 40, 8, 11); }

// A lane of depth 2 (the next decidable action queued behind the running one, its job posted by
// its microbatch actor in the stage's order): every planner still trains bitwise like the
// sequential run, with one and with two chunks per stage, and with data parallelism.
TEST(LaneDepthParityTest, EveryPlannerWithTheNextActionQueuedMatchesTheSequentialRunBitwise) {
  for (const char* name : {"gpipe", "1f1b", "interleaved", "looped_bfs", "zb_h1", "zb_h2", "zb_v",
                           "dualpipe_v", "adaptive", "example_backward_first"}) {
    absl::StatusOr<const runtime::PlannerDefinition*> planner =
        runtime::PlannerRegistry::Default().Get(name);
    ASSERT_TRUE(planner.ok()) << planner.status();
    stagehand::testing::ParityOptions parity{runtime::PlannerOptions{4, 8, 0}};
    parity.lane_depth = 2;
    parity.steps = 3;
    EXPECT_TRUE(TrainsLikeSequential(**planner, parity)) << name;
  }
  stagehand::testing::ParityOptions replicas{runtime::PlannerOptions{2, 4, 0}};
  replicas.lane_depth = 2;
  replicas.dp = 2;
  replicas.grad_bucket_mb = 0.001;
  replicas.tolerance = 1e-5;
  absl::StatusOr<const runtime::PlannerDefinition*> zb_h1 =
      runtime::PlannerRegistry::Default().Get("zb_h1");
  ASSERT_TRUE(zb_h1.ok()) << zb_h1.status();
  EXPECT_TRUE(TrainsLikeSequential(**zb_h1, replicas)) << "zb_h1 --dp=2";
}

// Works that complete after the call (a GPU stream's way, here a thread that delivers each
// action's results 200 us later): with the next action queued (depth 2) and without, every
// planner still trains bitwise like the sequential run; nothing reads a result early.
TEST(LaneDepthParityTest, WorksThatCompleteAfterTheCallTrainBitwise) {
  for (int depth : {1, 2}) {
    for (const char* name : {"1f1b", "interleaved", "zb_h1", "zb_v", "adaptive"}) {
      absl::StatusOr<const runtime::PlannerDefinition*> planner =
          runtime::PlannerRegistry::Default().Get(name);
      ASSERT_TRUE(planner.ok()) << planner.status();
      stagehand::testing::ParityOptions parity{runtime::PlannerOptions{4, 8, 0}};
      parity.lane_depth = depth;
      parity.completes_later = true;
      EXPECT_TRUE(TrainsLikeSequential(**planner, parity)) << name << " depth " << depth;
    }
  }
}

// The stage-work factory seats every replica's work (ModelPipelineOptions::StageWorkSpec's
// place, as --device=cuda's works are seated): works completing later under --dp=2 train like
// the sequential run of 2 x M microbatches. A factory that dropped the place would leave the
// replicas unreduced, each training on its own half.
TEST(LaneDepthParityTest, WorksThatCompleteLaterTrainDataParallel) {
  for (const char* name : {"1f1b", "zb_h1"}) {
    stagehand::testing::ParityOptions parity{runtime::PlannerOptions{2, 4, 0}};
    parity.lane_depth = 2;
    parity.completes_later = true;
    parity.dp = 2;
    parity.grad_bucket_mb = 0.001;
    parity.tolerance = 1e-5;
    absl::StatusOr<const runtime::PlannerDefinition*> planner =
        runtime::PlannerRegistry::Default().Get(name);
    ASSERT_TRUE(planner.ok()) << planner.status();
    EXPECT_TRUE(TrainsLikeSequential(**planner, parity)) << name << " --dp=2";
  }
}

// Variable-length microbatches (--seq_len_policy=variable, a budget of 16 tokens: each
// microbatch is 2 x T_m tokens, T_m in [1, 8]): every registered planner at P=4 trains bitwise
// like the sequential run of the same lengths (activations, gradients and the loss all sized
// by T_m; the step's loss weighs each microbatch by its tokens).
constexpr int64_t kVariableBudget = 16;

// ParityOptions at P=4, M=8 with the variable-length budget.
stagehand::testing::ParityOptions VariableLengths() {
  stagehand::testing::ParityOptions parity{runtime::PlannerOptions{4, 8, 0}};
  parity.microbatch_tokens = kVariableBudget;
  return parity;
}

// The registered planner `name` (a failure, and null, when there is none).
const runtime::PlannerDefinition* Registered(const std::string& name) {
  absl::StatusOr<const runtime::PlannerDefinition*> planner =
      runtime::PlannerRegistry::Default().Get(name);
  EXPECT_TRUE(planner.ok()) << planner.status();
  return planner.ok() ? *planner : nullptr;
}

TEST(VariableLengthParityTest, TheLengthsOfTheComparedStepsDiffer) {
  std::set<int> lengths;  // the parity sampler's seed (3), B = 2, seq_len = 8, M = 8, 2 steps
  for (int step = 1; step <= 2; ++step) {
    for (int mb = 0; mb < 8; ++mb) {
      lengths.insert(runtime::MicrobatchLength(runtime::SeqLenPolicy::kVariable, 3, step, mb, 2, 8,
                                               kVariableBudget));
    }
  }
  EXPECT_GE(lengths.size(), 4u);
  EXPECT_LT(*lengths.begin(), 8);
}

TEST(VariableLengthParityTest, EveryPlannerAtFourStagesMatchesTheSequentialRunBitwise) {
  for (const std::string& name : runtime::PlannerRegistry::Default().Names()) {
    const runtime::PlannerDefinition* planner = Registered(name);
    ASSERT_NE(planner, nullptr);
    EXPECT_TRUE(TrainsLikeSequential(*planner, VariableLengths())) << name;
  }
}

// With packed documents (per-document masks, positions restarting, masked targets) and RoPE.
TEST(VariableLengthParityTest, PackedDocumentsAndRopeMatchTheSequentialRunBitwise) {
  const models::GptConfig llama = TinyLlama();
  for (const char* name : {"1f1b", "zb_v"}) {
    const runtime::PlannerDefinition* planner = Registered(name);
    ASSERT_NE(planner, nullptr);
    stagehand::testing::ParityOptions parity = VariableLengths();
    parity.packed_documents = true;
    EXPECT_TRUE(TrainsLikeSequential(*planner, parity)) << name << " (packed)";
    parity.model = &llama;
    EXPECT_TRUE(TrainsLikeSequential(*planner, parity)) << name << " (packed, Llama-style)";
  }
}

// --dp=2: replica d draws the step's global microbatches d x M .. d x M + M - 1 and their
// lengths, and weighs its losses by the whole step's tokens; within 1e-5 of the sequential
// run of 2 M microbatches (the replicas' gradient sum reassociates, as without variable lengths).
TEST(VariableLengthParityTest, TwoReplicasTrainLikeTheSequentialRunOfTwiceTheMicrobatches) {
  const runtime::PlannerDefinition* planner = Registered("1f1b");
  ASSERT_NE(planner, nullptr);
  stagehand::testing::ParityOptions parity = VariableLengths();
  parity.planner = {2, 4, 0};
  parity.dp = 2;
  parity.steps = 3;
  parity.tolerance = 1e-5;
  EXPECT_TRUE(TrainsLikeSequential(*planner, parity));
}

models::GptConfig TinyMixed() {
  models::GptConfig c = models::testing::MixedBlocks(8, 16, 4, 8, 11);
  c.layers[5].ffn_hidden = 24;
  c.layers[6].num_kv_heads = 2;
  return c;
}

TEST(ModelKindsParityTest, LlamaStyleAndMixedModelsMatchTheSequentialRunBitwise) {
  const models::GptConfig llama = TinyLlama(), mixed = TinyMixed();
  for (const char* planner : {"1f1b", "zb_v", "interleaved"}) {
    absl::StatusOr<const runtime::PlannerDefinition*> definition =
        runtime::PlannerRegistry::Default().Get(planner);
    ASSERT_TRUE(definition.ok()) << definition.status();
    runtime::PlannerOptions options;
    options.num_stages = 4;
    options.num_microbatches = 8;
    options.chunks_per_stage = std::string(planner) == "1f1b" ? 1 : 2;
    for (const models::GptConfig* model : {&llama, &mixed}) {
      stagehand::testing::ParityOptions parity{options};
      parity.model = model;
      EXPECT_TRUE(TrainsLikeSequential(**definition, parity)) << planner;
    }
  }
}

// Data parallelism: D replicas of the pipeline, each on M microbatches, train like the
// sequential run of D x M microbatches. The replicas' gradients are summed replica by replica
// (runtime/collectives/collective.h), the sequential run's microbatch by microbatch: equal up
// to float reassociation, hence the 1e-5 relative tolerance. Every replica ends bitwise equal
// to replica 0 (checked by Pipelined).
TEST(DataParallelParityTest,
     TwoReplicasOfTwoStagesTrainLikeTheSequentialRunOfTwiceTheMicrobatches) {
  absl::StatusOr<const runtime::PlannerDefinition*> planner =
      runtime::PlannerRegistry::Default().Get("1f1b");
  ASSERT_TRUE(planner.ok()) << planner.status();
  stagehand::testing::ParityOptions parity{{2, 4, 0}};
  parity.dp = 2;
  parity.steps = 3;
  parity.tolerance = 1e-5;
  EXPECT_TRUE(TrainsLikeSequential(**planner, parity));
}

// Small buckets (a few hundred floats: several per chunk), interleaved and V-shaped
// placements (two chunks per stage, completing at different times), three replicas.
TEST(DataParallelParityTest, SmallBucketsAndSeveralChunksPerStageTrainLikeTheSequentialRun) {
  for (const char* name : {"interleaved", "zb_v"}) {
    absl::StatusOr<const runtime::PlannerDefinition*> planner =
        runtime::PlannerRegistry::Default().Get(name);
    ASSERT_TRUE(planner.ok()) << planner.status();
    runtime::PlannerOptions options{2, 4, 0};
    options.chunks_per_stage = 2;
    stagehand::testing::ParityOptions parity{options};
    parity.dp = 3;
    parity.grad_bucket_mb = 0.001;
    parity.tolerance = 1e-5;
    EXPECT_TRUE(TrainsLikeSequential(**planner, parity)) << name;
  }
}

// --zero=1 (ZeRO-1: moments sharded, gradients reduce-scattered, parameters all-gathered)
// trains like --zero=0: the reduce-scatter is the same ordered sum. Only the global norm's
// double-precision sum is grouped by owner instead of by tensor, so the clip scale may differ
// in its last bits: within 1e-5 (see the README's "Data parallelism").
TEST(DataParallelParityTest, ShardedOptimizerTrainsLikeTheUnshardedOne) {
  absl::StatusOr<const runtime::PlannerDefinition*> planner =
      runtime::PlannerRegistry::Default().Get("1f1b");
  ASSERT_TRUE(planner.ok()) << planner.status();
  stagehand::testing::ParityOptions parity{{2, 4, 0}};
  parity.dp = 2;
  parity.steps = 3;
  parity.tolerance = 0;
  EXPECT_TRUE(stagehand::testing::ShardedOptimizerTrainsLikeUnsharded(**planner, parity));
}

// ZeRO-1 with small buckets (several per chunk, some cutting the tied embedding), two chunks
// per stage and three replicas (owned ranges of unequal length) against the sequential run.
TEST(DataParallelParityTest, ShardedOptimizerWithSmallBucketsTrainsLikeTheSequentialRun) {
  absl::StatusOr<const runtime::PlannerDefinition*> planner =
      runtime::PlannerRegistry::Default().Get("interleaved");
  ASSERT_TRUE(planner.ok()) << planner.status();
  runtime::PlannerOptions options{2, 4, 0};
  options.chunks_per_stage = 2;
  stagehand::testing::ParityOptions parity{options};
  parity.dp = 3;
  parity.zero = 1;
  parity.grad_bucket_mb = 0.001;
  parity.tolerance = 1e-5;
  EXPECT_TRUE(TrainsLikeSequential(**planner, parity));
  parity.tolerance = 0;
  EXPECT_TRUE(stagehand::testing::ShardedOptimizerTrainsLikeUnsharded(**planner, parity));
}

// One stage: the one chunk holds the embedding and the head, whose gradient of the tied
// embedding is kept apart until folded; the replicas must sum that part too.
TEST(DataParallelParityTest, OneStageReplicasSumTheHeadsTiedGradientToo) {
  absl::StatusOr<const runtime::PlannerDefinition*> planner =
      runtime::PlannerRegistry::Default().Get("1f1b");
  ASSERT_TRUE(planner.ok()) << planner.status();
  for (int zero : {0, 1}) {
    stagehand::testing::ParityOptions parity{{1, 4, 0}};
    parity.dp = 2;
    parity.zero = zero;
    parity.steps = 3;
    parity.tolerance = 1e-5;
    EXPECT_TRUE(TrainsLikeSequential(**planner, parity)) << "--zero=" << zero;
  }
}

// The tolerance check is not vacuous: one replica alone is the sequential run of M, not 2 M.
TEST(DataParallelParityTest, TheToleranceCheckSeesADifferentBatch) {
  absl::StatusOr<const runtime::PlannerDefinition*> planner =
      runtime::PlannerRegistry::Default().Get("1f1b");
  ASSERT_TRUE(planner.ok()) << planner.status();
  stagehand::testing::ParityOptions twice{{2, 8, 0}};
  twice.tolerance = 1e-5;
  ASSERT_TRUE(TrainsLikeSequential(**planner, twice));
  stagehand::testing::ParityOptions half{{2, 4, 0}};
  half.dp = 2;
  half.tolerance = 1e-9;  // reassociation shows at this tolerance
  EXPECT_FALSE(TrainsLikeSequential(**planner, half));
}

// An MoE model pipelines like the sequential run too, with the same routing: MoE layers with
// capacity and drops, dropless, top-1 and top-2, a shared expert, load-balancing and z losses,
// for P in {1, 2, 4} under every placement kind (plain, interleaved, zero-bubble, V-shaped).
// 1f1b_overlap and dualpipe_v run the MoE chunks' actions as sub-steps (attn, dispatch,
// experts, combine, rest) on two lanes, F/B pairs overlapped: the same bits.
models::GptConfig TinyMoe() {
  models::GptConfig c = models::testing::LlamaStyle(8, 16, 4, 2, 40, 8, 11);
  const models::MoeSpec capped{4, 2, 24, 0, 1.0, 0.01, 0.001};
  const models::MoeSpec dropless{4, 1, 20, 12, 0.0, 0.05, 0.0};
  for (int layer : {1, 3, 6}) {
    c.layers[layer].mlp = models::MlpKind::kMoe;
    c.layers[layer].ffn_hidden = 0;
    c.layers[layer].moe = layer == 3 ? dropless : capped;
  }
  return c;
}

TEST(ModelKindsParityTest, MoeModelMatchesTheSequentialRunBitwise) {
  const models::GptConfig moe = TinyMoe();
  for (const char* planner :
       {"1f1b", "1f1b_overlap", "interleaved", "zb_h1", "zb_v", "dualpipe_v"}) {
    absl::StatusOr<const runtime::PlannerDefinition*> definition =
        runtime::PlannerRegistry::Default().Get(planner);
    ASSERT_TRUE(definition.ok()) << definition.status();
    for (int stages : {1, 2, 4}) {
      runtime::PlannerOptions options;
      options.num_stages = stages;
      options.num_microbatches = 8;
      options.chunks_per_stage = std::string(planner) == "interleaved" ? 2 : 0;
      stagehand::testing::ParityOptions parity{options};
      parity.model = &moe;
      EXPECT_TRUE(TrainsLikeSequential(**definition, parity)) << planner << " P=" << stages;
    }
  }
}

// Expert parallelism: --dp=2 --ep=2 makes the two replicas one expert-parallel group; each
// computes two of every MoE layer's four experts on both replicas' rows (dispatch and combine
// are all-to-alls), in whole actions (1f1b) and in sub-steps with F/B pairs overlapped
// (1f1b_overlap, dualpipe_v). The routing is each token's own, so the run trains like the
// sequential run of 2 M microbatches: within 1e-5, not bitwise, because an expert's weight
// gradient now sums both replicas' rows of a microbatch in one call (the sequential run adds
// them microbatch by microbatch) and the replicas' gradients are summed as for --dp.
TEST(ExpertParallelParityTest, TwoMembersSplittingTheExpertsTrainLikeTheSequentialRun) {
  const models::GptConfig moe = TinyMoe();
  for (const char* planner : {"1f1b", "1f1b_overlap", "dualpipe_v"}) {
    absl::StatusOr<const runtime::PlannerDefinition*> definition =
        runtime::PlannerRegistry::Default().Get(planner);
    ASSERT_TRUE(definition.ok()) << definition.status();
    for (int stages : {1, 2, 4}) {
      for (int ep : {1, 2}) {
        runtime::PlannerOptions options;
        options.num_stages = stages;
        options.num_microbatches = 8;
        stagehand::testing::ParityOptions parity{options};
        parity.model = &moe;
        parity.dp = 2;
        parity.ep = ep;
        parity.tolerance = 1e-5;
        EXPECT_TRUE(TrainsLikeSequential(**definition, parity))
            << planner << " P=" << stages << " ep=" << ep;
      }
    }
  }
}

// Variable lengths with MoE layers (each microbatch's expert capacity from its B x T_m tokens):
// whole actions and sub-steps (1f1b_overlap) bitwise like the sequential run; with --ep=2 the
// members exchange rows of microbatches of different lengths (each replica's own), within
// 1e-5 as above.
TEST(VariableLengthParityTest, MoeModelsAndExpertParallelismTrainLikeTheSequentialRun) {
  const models::GptConfig moe = TinyMoe();
  for (const char* name : {"1f1b", "1f1b_overlap"}) {
    const runtime::PlannerDefinition* planner = Registered(name);
    ASSERT_NE(planner, nullptr);
    stagehand::testing::ParityOptions parity = VariableLengths();
    parity.model = &moe;
    EXPECT_TRUE(TrainsLikeSequential(*planner, parity)) << name;
    parity.planner.num_stages = 2;
    parity.dp = 2;
    parity.ep = 2;
    parity.tolerance = 1e-5;
    EXPECT_TRUE(TrainsLikeSequential(*planner, parity)) << name << " --dp=2 --ep=2";
  }
}

// TinyMoe under 1f1b at P = 2, M = 4, with `dp` replicas in groups of `ep`.
stagehand::testing::ParityOptions ExpertParallelAtTwoStages(const models::GptConfig* moe, int dp,
                                                            int ep) {
  runtime::PlannerOptions options;
  options.num_stages = 2;
  options.num_microbatches = 4;
  stagehand::testing::ParityOptions parity{options};
  parity.model = moe;
  parity.dp = dp;
  parity.ep = ep;
  return parity;
}

const runtime::PlannerDefinition& OneFOneB() {
  return **runtime::PlannerRegistry::Default().Get("1f1b");
}

// dp = 4 as ep 2 x edp 2: each expert lives on two replicas, whose gradients are summed over
// their expert-data-parallel group while the rest is summed over all four; and ep 4 x edp 1.
TEST(ExpertParallelParityTest, ExpertDataParallelGroupsTrainLikeTheSequentialRun) {
  const models::GptConfig moe = TinyMoe();
  for (int ep : {2, 4}) {
    stagehand::testing::ParityOptions parity = ExpertParallelAtTwoStages(&moe, 4, ep);
    parity.tolerance = 1e-5;
    EXPECT_TRUE(TrainsLikeSequential(OneFOneB(), parity)) << "ep=" << ep;
  }
}

// Each replica holds the AdamW moments of the dense tensors and of 1/ep of the experts, exactly:
// two floats per element it holds; with --zero=1 (replica 0) its share of those, 1/dp of the
// dense elements and 1/edp of its experts' (each rounded as ShardBegin rounds).
TEST(ExpertParallelParityTest, ReplicasHoldDenseStatePlusTheirShareOfTheExperts) {
  const models::GptConfig moe = TinyMoe();
  struct Case {
    int dp, ep, zero;
  };
  for (const Case& k : std::vector<Case>{{2, 1, 0}, {2, 2, 0}, {2, 2, 1}, {4, 2, 1}}) {
    stagehand::testing::ParityOptions parity = ExpertParallelAtTwoStages(&moe, k.dp, k.ep);
    parity.zero = k.zero;
    parity.steps = 1;
    absl::StatusOr<std::vector<stagehand::testing::StageState>> stages =
        stagehand::testing::PipelinedStageStates(OneFOneB(), parity);
    ASSERT_TRUE(stages.ok()) << stages.status();
    ASSERT_EQ(stages->size(), 2u);
    for (size_t s = 0; s < stages->size(); ++s) {
      const stagehand::testing::StageState& stage = (*stages)[s];
      EXPECT_GT(stage.expert_floats, 0) << "stage " << s;
      const int64_t experts = stage.expert_floats / k.ep;  // one replica's
      const int64_t held = k.zero == 0 ? stage.dense_floats + experts
                                       : runtime::ShardLength(stage.dense_floats, k.dp, 0) +
                                             runtime::ShardLength(experts, k.dp / k.ep, 0);
      EXPECT_EQ(stage.optimizer_bytes, 2 * int64_t{sizeof(float)} * held)
          << "stage " << s << ", dp=" << k.dp << " ep=" << k.ep << " zero=" << k.zero;
    }
  }
}

// --zero=1 with --ep: the dense elements' moments sharded over the dp replicas, each expert's
// over the edp replicas holding it (kept whole by its one replica when edp = 1); gradients
// reduce-scattered over those groups, parameters all-gathered. Bitwise the --zero=0 run, for
// P in {1, 2}, ep 2 x edp 1 and ep 2 x edp 2, in whole actions and in sub-steps.
TEST(ExpertParallelParityTest, ZeroOneShardsExpertReplicasBitwiseLikeZeroZero) {
  const models::GptConfig moe = TinyMoe();
  for (const char* name : {"1f1b", "1f1b_overlap"}) {
    const runtime::PlannerDefinition* planner = Registered(name);
    ASSERT_NE(planner, nullptr);
    for (int stages : {1, 2}) {
      for (int dp : {2, 4}) {
        stagehand::testing::ParityOptions parity = ExpertParallelAtTwoStages(&moe, dp, 2);
        parity.planner.num_stages = stages;
        parity.steps = 3;
        parity.tolerance = 0;
        EXPECT_TRUE(stagehand::testing::ShardedOptimizerTrainsLikeUnsharded(*planner, parity))
            << name << " P=" << stages << " dp=" << dp << " ep=2";
      }
    }
  }
}

// Small buckets (several per chunk, cutting between dense and expert tensors and through both)
// with ep 2 x edp 2: the pieces of a bucket go to their own groups' owners.
TEST(ExpertParallelParityTest, ZeroOneWithSmallBucketsShardsExpertReplicasBitwise) {
  const models::GptConfig moe = TinyMoe();
  stagehand::testing::ParityOptions parity = ExpertParallelAtTwoStages(&moe, 4, 2);
  parity.grad_bucket_mb = 0.001;
  parity.steps = 3;
  parity.tolerance = 0;
  EXPECT_TRUE(stagehand::testing::ShardedOptimizerTrainsLikeUnsharded(OneFOneB(), parity));
}

// The flags that cannot split: --ep not dividing --dp or an MoE layer's experts, and a model
// without MoE layers.
TEST(ExpertParallelParityTest, RefusesAnEpThatCannotSplitTheExperts) {
  const models::GptConfig moe = TinyMoe();
  EXPECT_THAT(ValidateExpertParallelism(moe, 2, 2), IsOk());
  EXPECT_THAT(ValidateExpertParallelism(moe, 3, 2),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("must divide --dp=3")));
  EXPECT_THAT(ValidateExpertParallelism(moe, 8, 8),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("layer 1 has 4")));
  EXPECT_THAT(ValidateExpertParallelism(models::testing::LlamaStyle(8, 16, 4, 2, 40, 8, 11), 2, 2),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no MoE layer")));
  EXPECT_THAT(ValidateExpertParallelism(moe, 2, 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--ep=0")));
}

}  // namespace
}  // namespace stagehand::actors
