// Launch geometry shared by the CUDA kernels (grid-stride loops, warp sizes) and the bf16 type
// name. Internal to ops/cuda; not an abstraction over streams or devices.
#ifndef STAGEHAND_OPS_CUDA_LAUNCH_H_
#define STAGEHAND_OPS_CUDA_LAUNCH_H_

#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>

namespace stagehand::ops::cuda {

using bf16 = __nv_bfloat16;

inline constexpr int kWarpSize = 32;
inline constexpr int kBlockSize = 256;

// Blocks for a grid-stride loop over n elements: enough to fill an H100/H200 many times over,
// never more than the elements need.
inline int GridFor(int64_t n, int block_size = kBlockSize) {
  constexpr int64_t kMaxBlocks = 132 * 32;
  return static_cast<int>(
      std::max<int64_t>(1, std::min<int64_t>((n + block_size - 1) / block_size, kMaxBlocks)));
}

}  // namespace stagehand::ops::cuda

#endif  // STAGEHAND_OPS_CUDA_LAUNCH_H_
