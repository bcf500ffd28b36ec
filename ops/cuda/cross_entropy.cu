// The fused softmax cross-entropy kernel: one block per row, max and sum of exponentials in
// fp32 (block reductions in a fixed order), then the gradient written in place. Not online
// (three reads of the row; a single-pass online softmax is a later optimisation).
#include "ops/cuda/cross_entropy.h"
#include "ops/cuda/cuda_status.h"
#include "ops/cuda/reduce.cuh"

namespace stagehand::ops::cuda {
namespace {

constexpr int kThreads = 512;

__global__ void SoftmaxCrossEntropyFusedKernel(float* losses, bf16* logits, const int32_t* targets,
                                               float dloss, int V, int Vp) {
  __shared__ float shared[32];
  const int64_t row = blockIdx.x;
  bf16* x = logits + row * Vp;
  const int target = targets[row];
  // Read before any thread overwrites the row with gradients.
  const float target_logit = __bfloat162float(x[target]);

  float local_max = -INFINITY;
  for (int c = threadIdx.x; c < V; c += blockDim.x) {
    local_max = fmaxf(local_max, __bfloat162float(x[c]));
  }
  const float max_logit = BlockMax(local_max, shared);
  float local_sum = 0.0f;
  for (int c = threadIdx.x; c < V; c += blockDim.x) {
    local_sum += expf(__bfloat162float(x[c]) - max_logit);
  }
  const float sum = BlockSum(local_sum, shared);
  if (threadIdx.x == 0) losses[row] = logf(sum) + max_logit - target_logit;

  const float inverse_sum = 1.0f / sum;
  for (int c = threadIdx.x; c < Vp; c += blockDim.x) {
    float grad = 0.0f;
    if (c < V) {
      const float probability = expf(__bfloat162float(x[c]) - max_logit) * inverse_sum;
      grad = (probability - (c == target ? 1.0f : 0.0f)) * dloss;
    }
    x[c] = __float2bfloat16(grad);
  }
}

}  // namespace

absl::Status SoftmaxCrossEntropyFused(float* losses, bf16* logits, const int32_t* targets,
                                      float dloss, int N, int V, int Vp, cudaStream_t stream) {
  if (Vp < V) {
    return absl::InvalidArgumentError("SoftmaxCrossEntropyFused: padded vocabulary Vp < V");
  }
  SoftmaxCrossEntropyFusedKernel<<<N, kThreads, 0, stream>>>(losses, logits, targets, dloss, V, Vp);
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

}  // namespace stagehand::ops::cuda
