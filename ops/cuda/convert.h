// Elementwise precision conversions and the fp32 add on the GPU: what moves activations between
// the host's float payloads and bf16 compute, and what folds one gradient buffer into another.
// Grid-stride loops; not fused into any op.
#ifndef STAGEHAND_OPS_CUDA_CONVERT_H_
#define STAGEHAND_OPS_CUDA_CONVERT_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "ops/cuda/launch.h"

namespace stagehand::ops::cuda {

// out (n) = bf16(in), rounded to nearest even.
absl::Status FloatToBf16(bf16* out, const float* in, int64_t n, cudaStream_t stream);
// out (n) = float(in): exact.
absl::Status Bf16ToFloat(float* out, const bf16* in, int64_t n, cudaStream_t stream);
// out (n) += in (n), fp32: one rounding per element, as a host float add.
absl::Status AddFloat(float* out, const float* in, int64_t n, cudaStream_t stream);

}  // namespace stagehand::ops::cuda

#endif  // STAGEHAND_OPS_CUDA_CONVERT_H_
