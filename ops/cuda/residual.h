// Residual add on the GPU in bf16 (fp32 add): forward and input-gradient to both inputs, as
// ops/cpu/residual.h. No weights.
#ifndef STAGEHAND_OPS_CUDA_RESIDUAL_H_
#define STAGEHAND_OPS_CUDA_RESIDUAL_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "ops/cuda/launch.h"

namespace stagehand::ops::cuda {

// out (n) = a + b
absl::Status ResidualForward(bf16* out, const bf16* a, const bf16* b, int64_t n,
                             cudaStream_t stream);

// B: da (n) += dout; db (n) += dout. da and db may alias (then it adds twice).
absl::Status ResidualBackwardInput(bf16* da, bf16* db, const bf16* dout, int64_t n,
                                   cudaStream_t stream);

}  // namespace stagehand::ops::cuda

#endif  // STAGEHAND_OPS_CUDA_RESIDUAL_H_
