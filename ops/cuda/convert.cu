// Conversion and add kernels: elementwise grid-stride loops.
#include "ops/cuda/convert.h"
#include "ops/cuda/cuda_status.h"

namespace stagehand::ops::cuda {
namespace {

__global__ void FloatToBf16Kernel(bf16* out, const float* in, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = __float2bfloat16(in[i]);
  }
}

__global__ void Bf16ToFloatKernel(float* out, const bf16* in, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = __bfloat162float(in[i]);
  }
}

__global__ void AddFloatKernel(float* out, const float* in, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = __fadd_rn(out[i], in[i]);
  }
}

}  // namespace

absl::Status FloatToBf16(bf16* out, const float* in, int64_t n, cudaStream_t stream) {
  if (n <= 0) return absl::OkStatus();
  FloatToBf16Kernel<<<GridFor(n), kBlockSize, 0, stream>>>(out, in, n);
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

absl::Status Bf16ToFloat(float* out, const bf16* in, int64_t n, cudaStream_t stream) {
  if (n <= 0) return absl::OkStatus();
  Bf16ToFloatKernel<<<GridFor(n), kBlockSize, 0, stream>>>(out, in, n);
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

absl::Status AddFloat(float* out, const float* in, int64_t n, cudaStream_t stream) {
  if (n <= 0) return absl::OkStatus();
  AddFloatKernel<<<GridFor(n), kBlockSize, 0, stream>>>(out, in, n);
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

}  // namespace stagehand::ops::cuda
