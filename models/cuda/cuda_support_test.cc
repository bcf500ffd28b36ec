#include "models/cuda/cuda_support.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::models::cuda {
namespace {

using ::stagehand::testing::IsOk;
using ::testing::HasSubstr;

TEST(CudaSupport, Gpt2ModelsAreSupported) {
  EXPECT_THAT(CheckCudaChunkSupport(UniformGpt(4, 128, 4, 256, 64, 1), ChunkOptions{}), IsOk());
  EXPECT_THAT(CheckCudaChunkSupport(Gpt2Small(1), ChunkOptions{}), IsOk());
  GptConfig untied = UniformGpt(2, 64, 4, 256, 64, 1);
  untied.tied_head = false;
  EXPECT_THAT(CheckCudaChunkSupport(untied, ChunkOptions{}), IsOk());
}

TEST(CudaSupport, EveryFeatureTheKernelsLackIsNamed) {
  const GptConfig base = UniformGpt(3, 64, 4, 256, 64, 1);
  struct Case {
    void (*change)(GptConfig&, ChunkOptions&);
    const char* named;
  };
  const Case cases[] = {
      {[](GptConfig& c, ChunkOptions&) { c.norm = NormKind::kRmsNorm; }, "norm=rmsnorm"},
      {[](GptConfig& c, ChunkOptions&) { c.activation = ActivationKind::kSwiGlu; },
       "activation=swiglu"},
      {[](GptConfig& c, ChunkOptions&) { c.positions = PositionKind::kRope; }, "positions=rope"},
      {[](GptConfig& c, ChunkOptions&) { c.bias = false; }, "bias=false"},
      {[](GptConfig& c, ChunkOptions&) { c.layers[1].attention = AttentionKind::kNone; },
       "layers[1].attention=none"},
      {[](GptConfig& c, ChunkOptions&) { c.layers[2].attention = AttentionKind::kLinear; },
       "layers[2].attention=linear"},
      {[](GptConfig& c, ChunkOptions&) { c.layers[0].num_kv_heads = 2; },
       "layers[0].attention.n_kv_heads=2"},
      {[](GptConfig& c, ChunkOptions&) { c.layers[2].mlp = MlpKind::kMoe; }, "layers[2].mlp=moe"},
      {[](GptConfig& c, ChunkOptions&) { c.layers[1].mlp = MlpKind::kNone; }, "layers[1].mlp=none"},
      {[](GptConfig& c, ChunkOptions&) { c.layers[0].mlp = MlpKind::kLinear; },
       "layers[0].mlp=linear"},
      {[](GptConfig&, ChunkOptions& o) { o.reset_position_ids = true; }, "position resets"},
      {[](GptConfig&, ChunkOptions& o) { o.expert_shard.size = 2; }, "expert shards"},
  };
  for (const Case& c : cases) {
    GptConfig config = base;
    ChunkOptions options;
    c.change(config, options);
    const absl::Status status = CheckCudaChunkSupport(config, options);
    EXPECT_EQ(status.code(), absl::StatusCode::kUnimplemented) << c.named;
    EXPECT_THAT(status.message(), HasSubstr(c.named));
    EXPECT_THAT(status.message(), HasSubstr("--device=cpu"));
  }
  // A kv-head count equal to the heads is plain multi-head attention.
  GptConfig same = base;
  same.layers[0].num_kv_heads = 4;
  EXPECT_THAT(CheckCudaChunkSupport(same, ChunkOptions{}), IsOk());
}

}  // namespace
}  // namespace stagehand::models::cuda
