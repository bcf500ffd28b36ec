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

}  // namespace stagehand::models::cuda
