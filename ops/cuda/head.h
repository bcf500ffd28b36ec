// The tied language-model head fused with softmax cross-entropy (llm.c's classifier): logits =
// inp @ wte^T by cuBLASLt, then losses and dlogits in one kernel (cross_entropy.h); input- and
// weight-gradients as separate calls from the saved dlogits. Not a sampler: no probabilities.
#ifndef STAGEHAND_OPS_CUDA_HEAD_H_
#define STAGEHAND_OPS_CUDA_HEAD_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "ops/cuda/launch.h"
#include "ops/cuda/matmul.h"

namespace stagehand::ops::cuda {

// Letters: N rows (B*T), C channels, V vocabulary, Vp >= V padded vocabulary (wte's rows).
// F: logits (N, Vp) = inp (N, C) @ wte (Vp, C)^T; losses (N) fp32 per-token cross-entropy of
// targets (N, on the device); then logits holds dlogits = (softmax - onehot) * dloss (zero in
// padded columns), which the B and W calls read. logits is caller-provided scratch.
absl::Status HeadForwardLoss(float* losses, bf16* logits, const bf16* inp, const bf16* wte,
                             const int32_t* targets, float dloss, int N, int C, int V, int Vp,
                             Matmul& matmul, cudaStream_t stream);

// B: dinp (N, C) += dlogits (N, Vp) @ wte (Vp, C).
absl::Status HeadBackwardInput(bf16* dinp, const bf16* dlogits, const bf16* wte, int N, int C,
                               int Vp, Matmul& matmul, cudaStream_t stream);

// W: dwte (Vp, C) += dlogits^T @ inp, fp32 (tied: the same dwte the embedding accumulates into).
absl::Status HeadBackwardWeights(float* dwte, const bf16* dlogits, const bf16* inp, int N, int C,
                                 int Vp, Matmul& matmul, cudaStream_t stream);

}  // namespace stagehand::ops::cuda

#endif  // STAGEHAND_OPS_CUDA_HEAD_H_
