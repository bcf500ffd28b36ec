// LayerNorm kernels: one warp per row for the forward and the input-gradient (two passes over
// the row, statistics in fp32), a (32 channels x 8 row lanes) block per 32 channels for the
// weight-gradient. Not fused with the residual.
#include "ops/cuda/cuda_status.h"
#include "ops/cuda/layernorm.h"
#include "ops/cuda/reduce.cuh"

namespace stagehand::ops::cuda {
namespace {

constexpr float kEpsilon = 1e-5f;
constexpr int kRowsPerBlock = kBlockSize / kWarpSize;
constexpr int kChannelsPerBlock = 32;
constexpr int kRowLanes = 8;

__global__ void LayerNormForwardKernel(bf16* out, float* mean, float* rstd, const bf16* inp,
                                       const bf16* weight, const bf16* bias, int N, int C) {
  const int lane = threadIdx.x % kWarpSize;
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / kWarpSize;
  if (row >= N) return;
  const bf16* x = inp + static_cast<int64_t>(row) * C;
  float sum = 0.0f;
  for (int c = lane; c < C; c += kWarpSize) sum += __bfloat162float(x[c]);
  const float m = WarpSum(sum) / C;
  float squares = 0.0f;
  for (int c = lane; c < C; c += kWarpSize) {
    const float d = __bfloat162float(x[c]) - m;
    squares += d * d;
  }
  const float s = rsqrtf(WarpSum(squares) / C + kEpsilon);
  bf16* y = out + static_cast<int64_t>(row) * C;
  for (int c = lane; c < C; c += kWarpSize) {
    const float xhat = (__bfloat162float(x[c]) - m) * s;
    y[c] = __float2bfloat16(xhat * __bfloat162float(weight[c]) + __bfloat162float(bias[c]));
  }
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = s;
  }
}

__global__ void LayerNormBackwardInputKernel(bf16* dinp, const bf16* dout, const bf16* inp,
                                             const bf16* weight, const float* mean,
                                             const float* rstd, int N, int C) {
  const int lane = threadIdx.x % kWarpSize;
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / kWarpSize;
  if (row >= N) return;
  const int64_t offset = static_cast<int64_t>(row) * C;
  const float m = mean[row];
  const float s = rstd[row];
  float dnorm_sum = 0.0f;
  float dnorm_xhat_sum = 0.0f;
  for (int c = lane; c < C; c += kWarpSize) {
    const float xhat = (__bfloat162float(inp[offset + c]) - m) * s;
    const float dnorm = __bfloat162float(weight[c]) * __bfloat162float(dout[offset + c]);
    dnorm_sum += dnorm;
    dnorm_xhat_sum += dnorm * xhat;
  }
  const float dnorm_mean = WarpSum(dnorm_sum) / C;
  const float dnorm_xhat_mean = WarpSum(dnorm_xhat_sum) / C;
  for (int c = lane; c < C; c += kWarpSize) {
    const float xhat = (__bfloat162float(inp[offset + c]) - m) * s;
    const float dnorm = __bfloat162float(weight[c]) * __bfloat162float(dout[offset + c]);
    const float grad = (dnorm - dnorm_mean - xhat * dnorm_xhat_mean) * s;
    dinp[offset + c] = __float2bfloat16(__bfloat162float(dinp[offset + c]) + grad);
  }
}

// Block (32, 8): threadIdx.x a channel, threadIdx.y a lane of rows; lanes summed in order.
__global__ void LayerNormBackwardWeightsKernel(float* dweight, float* dbias, const bf16* dout,
                                               const bf16* inp, const float* mean,
                                               const float* rstd, int N, int C) {
  __shared__ float weight_partial[kRowLanes][kChannelsPerBlock];
  __shared__ float bias_partial[kRowLanes][kChannelsPerBlock];
  const int c = blockIdx.x * kChannelsPerBlock + threadIdx.x;
  float weight_sum = 0.0f;
  float bias_sum = 0.0f;
  if (c < C) {
    for (int row = threadIdx.y; row < N; row += kRowLanes) {
      const int64_t index = static_cast<int64_t>(row) * C + c;
      const float grad = __bfloat162float(dout[index]);
      const float xhat = (__bfloat162float(inp[index]) - mean[row]) * rstd[row];
      weight_sum += grad * xhat;
      bias_sum += grad;
    }
  }
  weight_partial[threadIdx.y][threadIdx.x] = weight_sum;
  bias_partial[threadIdx.y][threadIdx.x] = bias_sum;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float weight_total = 0.0f;
    float bias_total = 0.0f;
    for (int lane = 0; lane < kRowLanes; ++lane) {
      weight_total += weight_partial[lane][threadIdx.x];
      bias_total += bias_partial[lane][threadIdx.x];
    }
    dweight[c] += weight_total;
    dbias[c] += bias_total;
  }
}

}  // namespace

absl::Status LayerNormForward(bf16* out, float* mean, float* rstd, const bf16* inp,
                              const bf16* weight, const bf16* bias, int N, int C,
                              cudaStream_t stream) {
  const int grid = (N + kRowsPerBlock - 1) / kRowsPerBlock;
  LayerNormForwardKernel<<<grid, kBlockSize, 0, stream>>>(out, mean, rstd, inp, weight, bias, N, C);
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

absl::Status LayerNormBackwardInput(bf16* dinp, const bf16* dout, const bf16* inp,
                                    const bf16* weight, const float* mean, const float* rstd, int N,
                                    int C, cudaStream_t stream) {
  const int grid = (N + kRowsPerBlock - 1) / kRowsPerBlock;
  LayerNormBackwardInputKernel<<<grid, kBlockSize, 0, stream>>>(dinp, dout, inp, weight, mean, rstd,
                                                                N, C);
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

absl::Status LayerNormBackwardWeights(float* dweight, float* dbias, const bf16* dout,
                                      const bf16* inp, const float* mean, const float* rstd, int N,
                                      int C, cudaStream_t stream) {
  const dim3 block(kChannelsPerBlock, kRowLanes);
  const int grid = (C + kChannelsPerBlock - 1) / kChannelsPerBlock;
  LayerNormBackwardWeightsKernel<<<grid, block, 0, stream>>>(dweight, dbias, dout, inp, mean, rstd,
                                                             N, C);
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

}  // namespace stagehand::ops::cuda
