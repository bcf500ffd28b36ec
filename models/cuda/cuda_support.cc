// The CUDA chunk's supported models, checked field by field.
#include "models/cuda/cuda_support.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace stagehand::models::cuda {
namespace {

absl::Status Lacks(const std::string& what) {
  return absl::UnimplementedError(absl::StrCat(
      "--device=cuda: the CUDA kernels do not run ", what,
      " yet (GPT-2-style models only: LayerNorm, causal multi-head attention, dense GELU MLPs, "
      "biases, learned positions); train this model with --device=cpu"));
}

}  // namespace

absl::Status CheckCudaChunkSupport(const GptConfig& config, const ChunkOptions& options) {
  if (config.norm != NormKind::kLayerNorm) return Lacks("norm=rmsnorm");
  if (config.activation != ActivationKind::kGelu) return Lacks("activation=swiglu");
  if (config.positions != PositionKind::kLearned) return Lacks("positions=rope");
  if (!config.bias) return Lacks("bias=false");
  for (size_t l = 0; l < config.layers.size(); ++l) {
    const LayerSpec& layer = config.layers[l];
    const std::string at = absl::StrCat("layers[", l, "].");
    if (layer.attention == AttentionKind::kNone) return Lacks(at + "attention=none");
    if (layer.attention == AttentionKind::kLinear) return Lacks(at + "attention=linear");
    if (config.KvHeads(layer) != config.num_heads) {
      return Lacks(absl::StrCat(at, "attention.n_kv_heads=", layer.num_kv_heads,
                                " (grouped-query attention)"));
    }
    if (layer.mlp == MlpKind::kMoe) return Lacks(at + "mlp=moe");
    if (layer.mlp == MlpKind::kNone) return Lacks(at + "mlp=none");
    if (layer.mlp == MlpKind::kLinear) return Lacks(at + "mlp=linear");
  }
  if (options.reset_position_ids) return Lacks("per-document position resets");
  if (options.expert_shard.size != 1) return Lacks("expert shards (--ep)");
  return absl::OkStatus();
}

int64_t CudaActivationBytes(const GptConfig& config, const ChunkSpec& spec,
                            const ChunkOptions& options) {
  const int64_t B = options.micro_batch_size, T = options.seq_len, C = config.d_model;
  const int64_t N = B * T, NH = config.num_heads, half = 2, word = 4;
  int64_t bytes = N * C * half;  // the chunk's input (or the embedding's output)
  if (spec.has_embedding) bytes += 2 * N * word + (N + 1) * word + N * word;  // ids, groups
  for (int l = spec.first_layer; l < spec.end_layer; ++l) {
    const int64_t F = config.FcWidth(config.layers[l]);
    // F: ln1, qkv, atty, res2, ln2, out (N C each but qkv 3 N C), fch and its GELU (N F), the
    // attention probabilities (B NH T T), four statistics (N); B: d_fch (N F), d_qkv (3 N C),
    // d_ln2, d_res2, d_ln1, dx (N C).
    bytes += (8 * N * C + 2 * N * F + B * NH * T * T) * half + 4 * N * word;
    bytes += (N * F + 7 * N * C) * half;
  }
  bytes += N * C * half;  // the gradient into the last layer's output
  if (spec.has_head) {
    const int64_t padded_vocab = (config.vocab_size + 63) / 64 * 64;
    bytes += N * word + 2 * N * C * half + N * padded_vocab * half + 3 * N * word;
  }
  return bytes;
}

}  // namespace stagehand::models::cuda
