// Residual kernels: elementwise grid-stride loops on bf16. Not fused with LayerNorm (llm.c's
// fused residual+layernorm forward would save one read of the sum).
#include "ops/cuda/cuda_status.h"
#include "ops/cuda/residual.h"

namespace stagehand::ops::cuda {
namespace {

__global__ void ResidualForwardKernel(bf16* out, const bf16* a, const bf16* b, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = __float2bfloat16(__bfloat162float(a[i]) + __bfloat162float(b[i]));
  }
}

// One thread reads and writes da[i] then db[i]: when they alias, the second add sees the first.
__global__ void ResidualBackwardInputKernel(bf16* da, bf16* db, const bf16* dout, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float grad = __bfloat162float(dout[i]);
    da[i] = __float2bfloat16(__bfloat162float(da[i]) + grad);
    db[i] = __float2bfloat16(__bfloat162float(db[i]) + grad);
  }
}

}  // namespace

absl::Status ResidualForward(bf16* out, const bf16* a, const bf16* b, int64_t n,
                             cudaStream_t stream) {
  ResidualForwardKernel<<<GridFor(n), kBlockSize, 0, stream>>>(out, a, b, n);
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

absl::Status ResidualBackwardInput(bf16* da, bf16* db, const bf16* dout, int64_t n,
                                   cudaStream_t stream) {
  ResidualBackwardInputKernel<<<GridFor(n), kBlockSize, 0, stream>>>(da, db, dout, n);
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

}  // namespace stagehand::ops::cuda
