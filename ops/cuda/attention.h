// Causal multi-head self-attention core on the GPU, softmax(q k^T / sqrt(hs), causal) v from a
// packed qkv tensor: forward and input-gradient, as ops/cpu/attention.h (no weights).
//
// Variant: cuBLASLt strided-batched GEMMs with a fused causal softmax kernel, which stores the
// (T, T) probabilities, not a flash-style kernel. Why: it keeps the CPU op's contract (att is
// saved and compared element by element in the parity test), its GEMMs run on cuBLASLt's tuned
// Hopper kernels, and it was correct to write without a GPU at hand. Its cost is O(B NH T^2)
// memory traffic and scratch; a flash-style kernel (never storing T x T) is the step for speed.
#ifndef STAGEHAND_OPS_CUDA_ATTENTION_H_
#define STAGEHAND_OPS_CUDA_ATTENTION_H_

#include <cuda_runtime_api.h>

#include <cstddef>

#include "absl/status/status.h"
#include "ops/cuda/launch.h"
#include "ops/cuda/matmul.h"

namespace stagehand::ops::cuda {

// Letters: B batch, T time, C channels, NH heads, hs = C / NH head size.
// qkv (B, T, 3C): [q | k | v] along the last axis, each (NH, hs) head-major. bf16.
// out (B, T, C) bf16;  att (B, NH, T, T) bf16 saved probabilities (zero above the diagonal).
// scratch: device memory of at least AttentionScratchBytes(B, T, C, NH), caller-owned.
size_t AttentionScratchBytes(int B, int T, int C, int NH);

absl::Status AttentionForward(bf16* out, bf16* att, const bf16* qkv, void* scratch, int B, int T,
                              int C, int NH, Matmul& matmul, cudaStream_t stream);

// B: dqkv (B, T, 3C) += gradient of out w.r.t. qkv applied to dout (B, T, C).
absl::Status AttentionBackwardInput(bf16* dqkv, const bf16* dout, const bf16* qkv, const bf16* att,
                                    void* scratch, int B, int T, int C, int NH, Matmul& matmul,
                                    cudaStream_t stream);

}  // namespace stagehand::ops::cuda

#endif  // STAGEHAND_OPS_CUDA_ATTENTION_H_
