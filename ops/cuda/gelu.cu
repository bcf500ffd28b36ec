// GELU kernels: elementwise grid-stride loops, fp32 math on bf16 storage. Not vectorised
// (128-bit loads would be the next step for bandwidth).
#include "ops/cuda/cuda_status.h"
#include "ops/cuda/gelu.h"

namespace stagehand::ops::cuda {
namespace {

constexpr float kScale = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kCubic = 0.044715f;

__global__ void GeluForwardKernel(bf16* out, const bf16* inp, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float x = __bfloat162float(inp[i]);
    out[i] = __float2bfloat16(0.5f * x * (1.0f + tanhf(kScale * (x + kCubic * x * x * x))));
  }
}

__global__ void GeluBackwardInputKernel(bf16* dinp, const bf16* inp, const bf16* dout, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float x = __bfloat162float(inp[i]);
    const float t = tanhf(kScale * (x + kCubic * x * x * x));
    const float sech2 = 1.0f - t * t;
    const float local =
        0.5f * (1.0f + t) + 0.5f * x * sech2 * kScale * (1.0f + 3.0f * kCubic * x * x);
    dinp[i] = __float2bfloat16(__bfloat162float(dinp[i]) + local * __bfloat162float(dout[i]));
  }
}

}  // namespace

absl::Status GeluForward(bf16* out, const bf16* inp, int64_t n, cudaStream_t stream) {
  GeluForwardKernel<<<GridFor(n), kBlockSize, 0, stream>>>(out, inp, n);
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

absl::Status GeluBackwardInput(bf16* dinp, const bf16* inp, const bf16* dout, int64_t n,
                               cudaStream_t stream) {
  GeluBackwardInputKernel<<<GridFor(n), kBlockSize, 0, stream>>>(dinp, inp, dout, n);
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

}  // namespace stagehand::ops::cuda
