// Tests for the checks of network messages: each field of a transfer notice and squared
// norms (tied gradients: runtime/cluster/tied_shapes_test.cc), on a 1F1B step of 4 stages
// (one chunk each) and an interleaved step of 2 stages (two chunks each).
#include "actors/cluster/checks.h"

#include <cmath>

#include "gtest/gtest.h"
#include "runtime/action.h"
#include "runtime/planner.h"

namespace stagehand::actors::cluster {
namespace {

runtime::StepSpec Spec(const std::string& planner, int stages, int microbatches) {
  runtime::PlannerOptions o;
  o.num_stages = stages;
  o.num_microbatches = microbatches;
  auto definition = runtime::PlannerRegistry::Default().Get(planner);
  EXPECT_TRUE(definition.ok()) << definition.status();
  auto spec = (*definition)->MakeSpec(o);
  EXPECT_TRUE(spec.ok()) << spec.status();
  return *spec;
}

// Stage 2 of 4 (ranks 0..3, one stage each) receiving; 512 floats per tensor.
NoticeRules Rules() { return NoticeRules{Spec("1f1b", 4, 8), 2, 512, {0, 1, 2, 3}}; }

// A good activation for chunk 2 from stage 1.
TransferNotice Activation() {
  TransferNotice n;
  n.step = 3;
  n.from_rank = 1;
  n.tag = 7;
  n.floats = 512;
  n.kind = runtime::ActionKind::kForward;
  n.from_stage = 1;
  n.to_stage = 2;
  n.chunk = 2;
  n.microbatch = 5;
  return n;
}

TEST(CheckNoticeFieldsTest, AcceptsAnActivationAndAGradientFromTheRightNeighbours) {
  EXPECT_EQ(CheckNoticeFields(Activation(), Rules()), "");
  TransferNotice g = Activation();
  g.kind = runtime::ActionKind::kBackwardInput;
  g.from_stage = 3;
  g.from_rank = 3;
  EXPECT_EQ(CheckNoticeFields(g, Rules()), "");
}

TEST(CheckNoticeFieldsTest, RefusesAWrongSize) {
  TransferNotice n = Activation();
  n.floats = 513;
  EXPECT_EQ(CheckNoticeFields(n, Rules()), "513 floats where the model's tensors have 512");
  n.floats = -1;
  EXPECT_NE(CheckNoticeFields(n, Rules()), "");
}

// --seq_len_policy=variable: B * C = 8 floats a token, at most 64 tokens (512 floats).
TEST(CheckNoticeFieldsTest, AVariableLengthTensorIsWholeTokensWithinTheBound) {
  NoticeRules variable = Rules();
  variable.row_floats = 8;
  TransferNotice n = Activation();
  for (int64_t floats : {8, 96, 504, 512}) {
    n.floats = floats;
    EXPECT_EQ(CheckNoticeFields(n, variable), "") << floats;
  }
  n.floats = 100;
  EXPECT_EQ(CheckNoticeFields(n, variable),
            "100 floats are not a whole number of tokens of 8 floats (B * d_model)");
  n.floats = 520;
  EXPECT_EQ(CheckNoticeFields(n, variable),
            "520 floats outside (0, 512] (B * seq_len * d_model) for a variable-length tensor");
  n.floats = 0;
  EXPECT_NE(CheckNoticeFields(n, variable).find("0 floats outside (0, 512]"), std::string::npos);
  n.floats = -8;
  EXPECT_NE(CheckNoticeFields(n, variable), "");
  // Fixed lengths (row_floats 0) still take exactly B * seq_len * C.
  n.floats = 96;
  EXPECT_EQ(CheckNoticeFields(n, Rules()), "96 floats where the model's tensors have 512");
}

TEST(CheckNoticeFieldsTest, RefusesStagesAndRanksThatDoNotMatchThePeerTable) {
  TransferNotice n = Activation();
  n.from_stage = 4;
  EXPECT_EQ(CheckNoticeFields(n, Rules()), "source stage 4 out of range [0, 4)");
  n = Activation();
  n.from_rank = 0;
  EXPECT_EQ(CheckNoticeFields(n, Rules()), "stage 1 lives on rank 1, not rank 0");
  n = Activation();
  n.to_stage = 1;
  EXPECT_EQ(CheckNoticeFields(n, Rules()), "addressed to stage 1, this is stage 2");
  NoticeRules early = Rules();
  early.stage_rank.clear();
  EXPECT_EQ(CheckNoticeFields(Activation(), early), "notice before the peer table");
}

TEST(CheckNoticeFieldsTest, RefusesChunksMicrobatchesAndKindsThatCannotArriveHere) {
  TransferNotice n = Activation();
  n.chunk = 1;
  EXPECT_EQ(CheckNoticeFields(n, Rules()), "chunk 1 is not held here");
  n = Activation();
  n.microbatch = 8;
  EXPECT_EQ(CheckNoticeFields(n, Rules()), "microbatch 8 out of range [0, 8)");
  n = Activation();
  n.kind = runtime::ActionKind::kOptimizer;
  EXPECT_NE(CheckNoticeFields(n, Rules()).find("neither an activation nor a gradient"),
            std::string::npos);
  n = Activation();  // an activation from the stage after: a mix-up of directions
  n.from_stage = 3;
  n.from_rank = 3;
  EXPECT_EQ(CheckNoticeFields(n, Rules()), "an activation for chunk 2 cannot come from stage 3");
}

// NaN and Inf pass to the driver: the rerun state machine judges them (runtime/train/rerun.h).
TEST(CheckSquaredNormsTest, RefusesNegativeForeignChunksAndMisnamedNormsButPassesNaN) {
  const runtime::StepSpec spec = Spec("1f1b", 4, 8);
  EXPECT_EQ(CheckSquaredNorms(SquaredNorms{1, {{1, {0.0, 2.5}}}}, spec), "");
  EXPECT_EQ(CheckSquaredNorms(SquaredNorms{1, {{1, {0.0, NAN}}}}, spec), "");
  EXPECT_EQ(CheckSquaredNorms(SquaredNorms{1, {{1, {0.0}}}, {}, 0.0, {{1, {3}}}}, spec),
            "non-finite index 3 of chunk 1 is out of range");
  EXPECT_EQ(CheckSquaredNorms(SquaredNorms{1, {{1, {0.0, 1.0}}}, {{1, {"w"}}}}, spec),
            "1 tensor names for 2 squared norms of chunk 1");
  EXPECT_EQ(CheckSquaredNorms(SquaredNorms{1, {{1, {-1.0}}}}, spec),
            "squared norm 0 of chunk 1 is -1");
  EXPECT_EQ(CheckSquaredNorms(SquaredNorms{1, {{2, {1.0}}}}, spec),
            "chunk 2 is not held by stage 1");
}

}  // namespace
}  // namespace stagehand::actors::cluster
