// The tied head as three calls over the linear GEMMs and the fused cross-entropy kernel. Not a
// kernel of its own.
#include "ops/cuda/head.h"

#include "ops/cuda/cross_entropy.h"
#include "ops/cuda/linear.h"
#include "runtime/util/status_macros.h"

namespace stagehand::ops::cuda {

absl::Status HeadForwardLoss(float* losses, bf16* logits, const bf16* inp, const bf16* wte,
                             const int32_t* targets, float dloss, int N, int C, int V, int Vp,
                             Matmul& matmul, cudaStream_t stream) {
  RETURN_IF_ERROR(LinearForward(logits, inp, wte, /*bias=*/nullptr, N, C, Vp, matmul, stream));
  return SoftmaxCrossEntropyFused(losses, logits, targets, dloss, N, V, Vp, stream);
}

absl::Status HeadBackwardInput(bf16* dinp, const bf16* dlogits, const bf16* wte, int N, int C,
                               int Vp, Matmul& matmul, cudaStream_t stream) {
  return LinearBackwardInput(dinp, dlogits, wte, N, C, Vp, matmul, stream);
}

absl::Status HeadBackwardWeights(float* dwte, const bf16* dlogits, const bf16* inp, int N, int C,
                                 int Vp, Matmul& matmul, cudaStream_t stream) {
  return LinearBackwardWeights(dwte, /*dbias=*/nullptr, dlogits, inp, N, C, Vp, matmul, stream);
}

}  // namespace stagehand::ops::cuda
