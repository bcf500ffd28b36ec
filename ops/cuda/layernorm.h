// LayerNorm over the last axis on the GPU: forward, input-gradient (B) and weight-gradient (W)
// as separate calls, as ops/cpu/layernorm.h. bf16 activations and weights, fp32 statistics,
// weight gradients and accumulation. Not an RMSNorm; eps is GPT-2's 1e-5.
#ifndef STAGEHAND_OPS_CUDA_LAYERNORM_H_
#define STAGEHAND_OPS_CUDA_LAYERNORM_H_

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "ops/cuda/launch.h"

namespace stagehand::ops::cuda {

// Letters: N rows (B*T), C channels.
// out (N, C) = (inp - mean) * rstd * weight + bias; saves mean (N), rstd (N) in fp32.
absl::Status LayerNormForward(bf16* out, float* mean, float* rstd, const bf16* inp,
                              const bf16* weight, const bf16* bias, int N, int C,
                              cudaStream_t stream);

// B: dinp (N, C) += d(out)/d(inp) applied to dout (N, C).
absl::Status LayerNormBackwardInput(bf16* dinp, const bf16* dout, const bf16* inp,
                                    const bf16* weight, const float* mean, const float* rstd, int N,
                                    int C, cudaStream_t stream);

// W: dweight (C) += sum_n dout * xhat; dbias (C) += sum_n dout, fp32. Deterministic.
absl::Status LayerNormBackwardWeights(float* dweight, float* dbias, const bf16* dout,
                                      const bf16* inp, const float* mean, const float* rstd, int N,
                                      int C, cudaStream_t stream);

}  // namespace stagehand::ops::cuda

#endif  // STAGEHAND_OPS_CUDA_LAYERNORM_H_
