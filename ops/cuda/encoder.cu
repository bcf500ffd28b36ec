// Embedding kernels: an elementwise gather for the forward; for the weight-gradient, dwpe by
// (t, c) summing over b, and dwte by channel walking positions in order. Not atomic.
#include <algorithm>

#include "ops/cuda/cuda_status.h"
#include "ops/cuda/encoder.h"

namespace stagehand::ops::cuda {
namespace {

__global__ void EncoderForwardKernel(bf16* out, const int32_t* tokens, const bf16* wte,
                                     const bf16* wpe, int B, int T, int C) {
  const int64_t n = static_cast<int64_t>(B) * T * C;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t position = i / C;  // b * T + t
    const int c = static_cast<int>(i % C);
    const int t = static_cast<int>(position % T);
    const int64_t token = tokens[position];
    out[i] = __float2bfloat16(__bfloat162float(wte[token * C + c]) +
                              __bfloat162float(wpe[static_cast<int64_t>(t) * C + c]));
  }
}

__global__ void PositionGradKernel(float* dwpe, const bf16* dout, int B, int T, int C) {
  const int64_t n = static_cast<int64_t>(T) * C;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float sum = 0.0f;
    for (int b = 0; b < B; ++b) sum += __bfloat162float(dout[static_cast<int64_t>(b) * n + i]);
    dwpe[i] += sum;
  }
}

// Thread c owns column c of dwte: no two threads touch one element, and positions are added in
// order. Neighbouring threads read neighbouring channels, so loads and stores coalesce.
__global__ void TokenGradKernel(float* dwte, const bf16* dout, const int32_t* tokens, int positions,
                                int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  for (int position = 0; position < positions; ++position) {
    const int64_t token = tokens[position];
    dwte[token * C + c] += __bfloat162float(dout[static_cast<int64_t>(position) * C + c]);
  }
}

// Block (group y, channels x): thread (g, c) owns dwte[ids[g], c] and adds its group's positions
// in increasing order, as TokenGradKernel does for that element.
__global__ void GroupedTokenGradKernel(float* dwte, const bf16* dout, const int32_t* order,
                                       const int32_t* starts, const int32_t* ids, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  const int group = blockIdx.y;
  if (c >= C) return;
  float* target = dwte + static_cast<int64_t>(ids[group]) * C + c;
  float sum = *target;
  for (int i = starts[group]; i < starts[group + 1]; ++i) {
    sum += __bfloat162float(dout[static_cast<int64_t>(order[i]) * C + c]);
  }
  *target = sum;
}

}  // namespace

absl::Status EncoderBackwardWeightsGrouped(float* dwte, float* dwpe, const bf16* dout,
                                           const int32_t* order, const int32_t* starts,
                                           const int32_t* ids, int groups, int B, int T, int C,
                                           cudaStream_t stream) {
  PositionGradKernel<<<GridFor(static_cast<int64_t>(T) * C), kBlockSize, 0, stream>>>(dwpe, dout, B,
                                                                                      T, C);
  CUDA_RETURN_IF_LAUNCH_ERROR();
  if (groups == 0) return absl::OkStatus();
  constexpr int kThreads = 128;
  constexpr int kMaxGridY = 65535;  // groups beyond it (vocabularies over 64K) in further launches
  for (int first = 0; first < groups; first += kMaxGridY) {
    const dim3 grid((C + kThreads - 1) / kThreads, std::min(kMaxGridY, groups - first));
    GroupedTokenGradKernel<<<grid, kThreads, 0, stream>>>(dwte, dout, order, starts + first,
                                                          ids + first, C);
    CUDA_RETURN_IF_LAUNCH_ERROR();
  }
  return absl::OkStatus();
}

absl::Status EncoderForward(bf16* out, const int32_t* tokens, const bf16* wte, const bf16* wpe,
                            int B, int T, int C, cudaStream_t stream) {
  const int64_t n = static_cast<int64_t>(B) * T * C;
  EncoderForwardKernel<<<GridFor(n), kBlockSize, 0, stream>>>(out, tokens, wte, wpe, B, T, C);
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

absl::Status EncoderBackwardWeights(float* dwte, float* dwpe, const bf16* dout,
                                    const int32_t* tokens, int B, int T, int C,
                                    cudaStream_t stream) {
  PositionGradKernel<<<GridFor(static_cast<int64_t>(T) * C), kBlockSize, 0, stream>>>(dwpe, dout, B,
                                                                                      T, C);
  CUDA_RETURN_IF_LAUNCH_ERROR();
  constexpr int kThreads = 64;
  TokenGradKernel<<<(C + kThreads - 1) / kThreads, kThreads, 0, stream>>>(dwte, dout, tokens, B * T,
                                                                          C);
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

}  // namespace stagehand::ops::cuda
