// GELU, tanh approximation (GPT-2's), on the GPU in bf16 with fp32 math: forward and
// input-gradient, as ops/cpu/gelu.h. No weights, so no W call. Not fused into the linear.
#ifndef STAGEHAND_OPS_CUDA_GELU_H_
#define STAGEHAND_OPS_CUDA_GELU_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "ops/cuda/launch.h"

namespace stagehand::ops::cuda {

// out (n) = 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
absl::Status GeluForward(bf16* out, const bf16* inp, int64_t n, cudaStream_t stream);

// B: dinp (n) += gelu'(inp) * dout.
absl::Status GeluBackwardInput(bf16* dinp, const bf16* inp, const bf16* dout, int64_t n,
                               cudaStream_t stream);

}  // namespace stagehand::ops::cuda

#endif  // STAGEHAND_OPS_CUDA_GELU_H_
