// Softmax + cross-entropy over a (padded) vocabulary on the GPU, fused with its input-gradient
// as llm.c's fused classifier: one pass writes the per-row loss and overwrites the logits with
// dlogits. Used by the tied head (head.h). Not a label-smoothed loss; probabilities are not kept.
#ifndef STAGEHAND_OPS_CUDA_CROSS_ENTROPY_H_
#define STAGEHAND_OPS_CUDA_CROSS_ENTROPY_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "ops/cuda/launch.h"

namespace stagehand::ops::cuda {

// Letters: N rows (B*T), V vocabulary, Vp >= V the padded row length (GPT-2: 50257 in 50304).
// In:  logits (N, Vp) bf16 (columns >= V ignored); targets (N) ids in [0, V), on the device.
// Out: losses (N) fp32 = -log softmax(logits[n, :V])[targets[n]];
//      logits overwritten by dlogits (N, Vp) = (softmax - onehot(targets)) * dloss, zero in the
//      padded columns. dloss is d(total loss)/d(losses[n]), the same for every row (1/N for a
//      mean): known before the backward, which is what lets the gradient fuse into this pass.
// The equivalent CPU calls: SoftmaxCrossEntropyForward then SoftmaxCrossEntropyBackwardInput.
absl::Status SoftmaxCrossEntropyFused(float* losses, bf16* logits, const int32_t* targets,
                                      float dloss, int N, int V, int Vp, cudaStream_t stream);

}  // namespace stagehand::ops::cuda

#endif  // STAGEHAND_OPS_CUDA_CROSS_ENTROPY_H_
