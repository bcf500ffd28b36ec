// Tests of StepSpec validation and the standard placements.
// Not tests of planners, which build specs (runtime/planners/*_test.cc).
#include "runtime/step_spec.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace stagehand::runtime {
namespace {

StepSpec Valid() {
  StepSpec spec;
  spec.num_stages = 4;
  spec.num_microbatches = 8;
  spec.num_chunks = 8;
  spec.chunk_to_stage = StandardPlacement(4, 2);
  return spec;
}

void ExpectInvalid(const StepSpec& spec, const std::string& fragment) {
  const absl::Status status = ValidateStepSpec(spec);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(std::string(status.message()).find(fragment), std::string::npos) << status;
}

TEST(StepSpecTest, AcceptsAValidSpec) { EXPECT_TRUE(ValidateStepSpec(Valid()).ok()); }

TEST(StepSpecTest, NamesTheBadField) {
  StepSpec spec = Valid();
  spec.num_stages = 0;
  ExpectInvalid(spec, "StepSpec.num_stages = 0");
  spec = Valid();
  spec.num_microbatches = -1;
  ExpectInvalid(spec, "StepSpec.num_microbatches = -1");
  spec = Valid();
  spec.num_chunks = 0;
  ExpectInvalid(spec, "StepSpec.num_chunks = 0");
  spec = Valid();
  spec.chunk_to_stage.pop_back();
  ExpectInvalid(spec, "StepSpec.chunk_to_stage has 7 entries, must have num_chunks = 8");
  spec = Valid();
  spec.chunk_to_stage[5] = 4;
  ExpectInvalid(spec, "StepSpec.chunk_to_stage[5] = 4, must be in [0, num_stages = 4)");
  spec = Valid();
  spec.chunk_to_stage[3] = 0;
  spec.chunk_to_stage[7] = 0;
  ExpectInvalid(spec, "places no chunk on stage 3");
  spec = Valid();
  spec.max_inflight = -2;
  ExpectInvalid(spec, "StepSpec.max_inflight = -2");
}

TEST(StepSpecTest, StandardPlacementPutsChunkCOnStageCModP) {
  EXPECT_EQ(StandardPlacement(4, 1), (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(StandardPlacement(3, 2), (std::vector<int>{0, 1, 2, 0, 1, 2}));
}

TEST(StepSpecTest, VPlacementFoldsBack) {
  EXPECT_EQ(VPlacement(4), (std::vector<int>{0, 1, 2, 3, 3, 2, 1, 0}));
  EXPECT_EQ(VPlacement(1), (std::vector<int>{0, 0}));
}

TEST(StepSpecTest, ChunksOnStageListsAscending) {
  StepSpec spec = Valid();
  spec.chunk_to_stage = VPlacement(4);
  EXPECT_EQ(ChunksOnStage(spec, 1), (std::vector<int>{1, 6}));
}

}  // namespace
}  // namespace stagehand::runtime

namespace stagehand::runtime {
namespace {

TEST(StepSpecTest, TheLastChunkHoldsTheLossOnItsStage) {
  StepSpec v;
  v.num_stages = 2;
  v.num_microbatches = 1;
  v.num_chunks = 4;
  v.chunk_to_stage = VPlacement(2);  // {0, 1, 1, 0}: the V brings the loss back to stage 0
  EXPECT_TRUE(HoldsLoss(v, 3));
  EXPECT_FALSE(HoldsLoss(v, 0));
  EXPECT_EQ(LossStage(v), 0);
  v.chunk_to_stage = StandardPlacement(2, 2);  // {0, 1, 0, 1}
  EXPECT_EQ(LossStage(v), 1);
}

}  // namespace
}  // namespace stagehand::runtime
