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

// The GPU bytes of one microbatch, counted by hand for a 1-layer chunk with the embedding and
// the head (B 2, T 8, C 16, 2 heads, vocabulary 100 padded to 128, MLP 64).
TEST(CudaSupport, ActivationBytesCountWhatTheChunkAllocates) {
  const GptConfig config = UniformGpt(1, 16, 2, 100, 8, 1);
  ChunkOptions options;
  options.micro_batch_size = 2;
  options.seq_len = 8;
  const int64_t N = 16, C = 16, F = 64;
  const int64_t input = N * C * 2, ids = 2 * N * 4 + (N + 1) * 4 + N * 4;
  const int64_t forward = (8 * N * C + 2 * N * F + 2 * 2 * 8 * 8) * 2 + 4 * N * 4;
  const int64_t backward = (N * F + 7 * N * C) * 2 + N * C * 2;
  const int64_t head = N * 4 + 2 * N * C * 2 + N * 128 * 2 + 3 * N * 4;
  EXPECT_EQ(CudaActivationBytes(config, ChunkSpec{0, 1, true, true}, options),
            input + ids + forward + backward + head);
  // A middle chunk has neither ids nor the head.
  EXPECT_EQ(CudaActivationBytes(config, ChunkSpec{0, 1, false, false}, options),
            input + forward + backward);
}

}  // namespace
}  // namespace stagehand::models::cuda
