// Which models the CUDA chunk (cuda_gpt_chunk.h) can train: plain host code, so that the
// launcher refuses --device=cuda for an unsupported model before touching a GPU, and so that
// the rule is tested without one. Not a capability probe of the device (ops/cuda/device.h).
#ifndef STAGEHAND_MODELS_CUDA_CUDA_SUPPORT_H_
#define STAGEHAND_MODELS_CUDA_CUDA_SUPPORT_H_

#include <cstdint>

#include "absl/status/status.h"
#include "models/gpt_chunk.h"
#include "models/gpt_config.h"

namespace stagehand::models::cuda {

// OK for GPT-2-style models: LayerNorm, causal multi-head attention (no grouped-query heads),
// a dense GELU MLP in every layer, biases, learned positions, without per-document position
// resets or expert shards. Else Unimplemented naming the first feature the CUDA kernels lack
// and the model field that asks for it (e.g. "layers[2].mlp=moe").
absl::Status CheckCudaChunkSupport(const GptConfig& config, const ChunkOptions& options);

// Bytes one microbatch holds on the GPU from its F until its W (cuda_gpt_chunk's saved
// activations in bf16, statistics and ids, and its B's gradients), before the caching
// allocator rounds each block up: what the trace's memory counter counts per activation.
int64_t CudaActivationBytes(const GptConfig& config, const ChunkSpec& spec,
                            const ChunkOptions& options);

}  // namespace stagehand::models::cuda

#endif  // STAGEHAND_MODELS_CUDA_CUDA_SUPPORT_H_
