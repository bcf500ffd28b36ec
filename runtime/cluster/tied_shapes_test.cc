// Tests of the tied tensors per stage and the tied-gradient check, on an interleaved step
// of 2 stages with 2 chunks each (chunks 0, 2 on stage 0; 1, 3 on stage 1).
#include "runtime/cluster/tied_shapes.h"

#include "gtest/gtest.h"

namespace stagehand::runtime {
namespace {

StepSpec Interleaved() {
  StepSpec spec;
  spec.num_stages = 2;
  spec.num_microbatches = 4;
  spec.num_chunks = 4;
  spec.chunk_to_stage = {0, 1, 0, 1};
  return spec;
}

TEST(StageTiedShapes, EmbeddingAndHeadChunksHoldWte) {
  EXPECT_EQ(StageTiedShapes(Interleaved(), 0, 6), (TiedShapes{{0, {{"wte", 6}}}}));
  EXPECT_EQ(StageTiedShapes(Interleaved(), 1, 6), (TiedShapes{{3, {{"wte", 6}}}}));
}

TEST(StageTiedShapes, OneChunkTiesNothingAcrossStages) {
  StepSpec spec;
  spec.num_stages = 1;
  spec.num_chunks = 1;
  spec.chunk_to_stage = {0};
  EXPECT_TRUE(StageTiedShapes(spec, 0, 6).empty());
}

TEST(StageTiedShapes, AnUntiedHeadTiesNothing) {
  EXPECT_TRUE(StageTiedShapes(Interleaved(), 0, 0).empty());
  EXPECT_TRUE(StageTiedShapes(Interleaved(), 1, 0).empty());
  EXPECT_EQ(CheckTiedGradients({}, StageTiedShapes(Interleaved(), 1, 0)), "");
}

TEST(CheckTiedGradients, AcceptsExactlyTheTiedTensorsOfTheStage) {
  const TiedShapes shapes = StageTiedShapes(Interleaved(), 1, 6);
  EXPECT_EQ(CheckTiedGradients({{3, {{"wte", std::vector<float>(6)}}}}, shapes), "");
  EXPECT_EQ(CheckTiedGradients({{3, {{"wte", std::vector<float>(7)}}}}, shapes),
            "tied gradient wte of chunk 3 has 7 floats, not 6");
  EXPECT_EQ(CheckTiedGradients({{3, {{"wpe", std::vector<float>(6)}}}}, shapes),
            "chunk 3 has no tied tensor 'wpe'");
  EXPECT_EQ(CheckTiedGradients({{1, {{"wte", std::vector<float>(6)}}}}, shapes),
            "chunk 1 has no tied tensors here");
  EXPECT_EQ(CheckTiedGradients({}, shapes), "tied gradients of 0 chunks, not 1");
}

}  // namespace
}  // namespace stagehand::runtime
