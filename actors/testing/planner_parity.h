// TrainsLikeSequential: the one-line parity check for a planner, built in or your own: it
// validates the plan, trains a tiny GPT with it on the actor runtime and compares every loss
// and every parameter, bit for bit, with the single-chunk sequential run of the same model and
// data. Not a benchmark and not a repeatability test; link it from tests only (testonly).
//
//   TEST(MyPlannerTest, TrainsLikeTheSequentialRun) {
//     stagehand::testing::ExpectTrainsLikeSequential(MyDefinition(), {/*P=*/4, /*M=*/8});
//   }
#ifndef STAGEHAND_ACTORS_TESTING_PLANNER_PARITY_H_
#define STAGEHAND_ACTORS_TESTING_PLANNER_PARITY_H_

#include "gtest/gtest.h"
#include "models/gpt_config.h"
#include "runtime/planner.h"

namespace stagehand::testing {

struct ParityOptions {
  runtime::PlannerOptions planner;  // P, M, max_inflight, chunks_per_stage
  int steps = 2;                    // optimizer steps compared
  // Transformer layers of the tiny model (d_model 16, 2 heads, 256-token vocabulary, 8 tokens
  // a sequence, 2 sequences a microbatch); 0 = max(8, the plan's chunk count).
  int layers = 0;
  // A model of your own (Llama-style, heterogeneous, ...; vocabulary 256, max_seq_len >= 8);
  // null: the tiny uniform GPT above. Not owned.
  const models::GptConfig* model = nullptr;
  // Data parallelism: `dp` replicas of the pipeline (as actors), compared with the sequential
  // run of dp x M microbatches; buckets of `grad_bucket_mb`.
  int dp = 1;
  double grad_bucket_mb = 25;
  int zero = 0;  // --zero: 1 shards the replicas' optimizer state (ZeRO-1)
  // --ep: expert parallelism over groups of `ep` replicas (divides dp; an MoE `model`).
  int ep = 1;
  // 0: bitwise. Else the largest relative difference allowed: per loss |a - b| <= tolerance *
  // max(|a|, |b|, 1e-3); per parameter tensor ||a - b|| <= tolerance * ||b|| (2-norms, b the
  // sequential run's). Replicas sum their gradients as
  // (sum of replica 0's microbatches) + (sum of replica 1's) + ..., where the sequential run
  // adds microbatch by microbatch: equal up to float reassociation, so dp > 1 needs one.
  double tolerance = 0;
  // Packed documents (--packing=documents --reset_position_ids): each word of the text (a run
  // after a space or a newline) is a document, so a window holds several.
  bool packed_documents = false;
  // Whole actions each stage's lane may hold (PipelineOptions::lane_depth): 2 queues the next
  // decidable action behind the running one. Results must not depend on it.
  int lane_depth = 1;
  // Every stage's compute completes after its call, on another thread, as on a GPU stream
  // (runtime::StageWork::CompletesLater, testing/later_completion_work.h). One replica only.
  bool completes_later = false;
  // Variable-length microbatches (--seq_len_policy=variable): a budget of this many tokens per
  // microbatch, so each microbatch is 2 x T_m tokens with T_m in [1, min(8, budget / 2)], a
  // pure function of (seed, step, microbatch); the sequential run draws the same. 0: fixed.
  int64_t microbatch_tokens = 0;
};

// Success, or a failure that says what differs: the planner's error (MakeSpec, the
// simulator, ValidatePlan), a loss of a step, or the first parameter (by name) whose bits
// differ (or, with a tolerance, that differs by more). The sequential run is computed once per (M,
// layers, steps, packing) and cached.
::testing::AssertionResult TrainsLikeSequential(const runtime::PlannerDefinition& definition,
                                                const ParityOptions& options);

// The same run with `options.zero` = 1 and = 0 (dp > 1): equal within `options.tolerance` (0:
// bitwise) in every loss and parameter tensor. The replicas end bitwise equal in both.
::testing::AssertionResult ShardedOptimizerTrainsLikeUnsharded(
    const runtime::PlannerDefinition& definition, const ParityOptions& options);

// One stage of replica 0 after the pipelined run of `options` (its steps): the AdamW bytes it
// holds, and the floats of the whole model's tensors on it (tied copies included: they have
// moments too), routed experts' apart from the rest.
struct StageState {
  int64_t optimizer_bytes = 0;
  int64_t dense_floats = 0, expert_floats = 0;
};
absl::StatusOr<std::vector<StageState>> PipelinedStageStates(
    const runtime::PlannerDefinition& definition, const ParityOptions& options);

// EXPECT_TRUE(TrainsLikeSequential(definition, {options})): the default steps and model.
void ExpectTrainsLikeSequential(const runtime::PlannerDefinition& definition,
                                const runtime::PlannerOptions& options);

}  // namespace stagehand::testing

#endif  // STAGEHAND_ACTORS_TESTING_PLANNER_PARITY_H_
