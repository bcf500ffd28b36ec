// Warp and block reductions for the kernels (sum and max, fp32), in a fixed order: the same
// inputs give the same bits on every run. Device code only; internal to ops/cuda.
#ifndef STAGEHAND_OPS_CUDA_REDUCE_CUH_
#define STAGEHAND_OPS_CUDA_REDUCE_CUH_

namespace stagehand::ops::cuda {

__device__ inline float WarpSum(float value) {
  for (int offset = 16; offset > 0; offset /= 2) {
    value += __shfl_xor_sync(0xffffffffu, value, offset);
  }
  return value;
}

__device__ inline float WarpMax(float value) {
  for (int offset = 16; offset > 0; offset /= 2) {
    value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
  }
  return value;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024), returned to every thread.
// `shared` holds 32 floats. Calls __syncthreads: every thread of the block must call it.
__device__ inline float BlockSum(float value, float* shared) {
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int warps = blockDim.x / 32;
  value = WarpSum(value);
  __syncthreads();  // shared may still be read by a previous call
  if (lane == 0) shared[warp] = value;
  __syncthreads();
  value = lane < warps ? shared[lane] : 0.0f;
  return WarpSum(value);
}

__device__ inline float BlockMax(float value, float* shared) {
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int warps = blockDim.x / 32;
  value = WarpMax(value);
  __syncthreads();
  if (lane == 0) shared[warp] = value;
  __syncthreads();
  value = lane < warps ? shared[lane] : -INFINITY;
  return WarpMax(value);
}

}  // namespace stagehand::ops::cuda

#endif  // STAGEHAND_OPS_CUDA_REDUCE_CUH_
