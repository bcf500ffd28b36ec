// Linear layer out = inp @ weight^T + bias on the GPU: GEMMs through cuBLASLt (the bias added by
// its epilogue in the forward), forward, input-gradient (B) and weight-gradient (W) as separate
// calls, as ops/cpu/linear.h. Not a batched or quantised GEMM.
#ifndef STAGEHAND_OPS_CUDA_LINEAR_H_
#define STAGEHAND_OPS_CUDA_LINEAR_H_

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "ops/cuda/launch.h"
#include "ops/cuda/matmul.h"

namespace stagehand::ops::cuda {

// Letters: N rows (B*T), C input channels, OC output channels. Activations and weights bf16,
// weight gradients fp32 (they accumulate over microbatches), accumulation fp32.
// out (N, OC) = inp (N, C) @ weight (OC, C)^T + bias (OC); bias may be null.
absl::Status LinearForward(bf16* out, const bf16* inp, const bf16* weight, const bf16* bias, int N,
                           int C, int OC, Matmul& matmul, cudaStream_t stream);

// B: dinp (N, C) += dout (N, OC) @ weight (OC, C).
absl::Status LinearBackwardInput(bf16* dinp, const bf16* dout, const bf16* weight, int N, int C,
                                 int OC, Matmul& matmul, cudaStream_t stream);

// W: dweight (OC, C) += dout^T (OC, N) @ inp (N, C); dbias (OC) += sum_n dout (may be null),
// both fp32. The bias sum is deterministic (a fixed reduction order).
absl::Status LinearBackwardWeights(float* dweight, float* dbias, const bf16* dout, const bf16* inp,
                                   int N, int C, int OC, Matmul& matmul, cudaStream_t stream);

// dbias (OC) += sum over n of dout (N, OC), fp32, deterministic. Also used by other ops.
absl::Status ColumnSumAccumulate(float* dbias, const bf16* dout, int N, int OC,
                                 cudaStream_t stream);

}  // namespace stagehand::ops::cuda

#endif  // STAGEHAND_OPS_CUDA_LINEAR_H_
