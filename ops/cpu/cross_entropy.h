// Softmax + cross-entropy over the vocabulary, fused (as llm.c does): forward to per-token
// losses, and the input-gradient into the logits. No weights. Not a label-smoothed loss.
#ifndef STAGEHAND_OPS_CPU_CROSS_ENTROPY_H_
#define STAGEHAND_OPS_CPU_CROSS_ENTROPY_H_

#include <cstdint>

namespace stagehand::ops {

// Letters: N rows (B*T), V vocabulary.
// probs (N, V) = softmax(logits (N, V)); probs may alias logits (computed in place).
// losses (N) = -log probs[n, targets[n]]; targets ids in [0, V).
template <typename Real>
void SoftmaxCrossEntropyForward(Real* losses, Real* probs, const Real* logits,
                                const int32_t* targets, int N, int V);

// B: dlogits (N, V) += (probs - onehot(targets)) * dlosses[n]. dlogits may alias probs
// (then it is overwritten instead of accumulated: dlogits = (probs - onehot) * dlosses).
template <typename Real>
void SoftmaxCrossEntropyBackwardInput(Real* dlogits, const Real* probs, const int32_t* targets,
                                      const Real* dlosses, int N, int V);

}  // namespace stagehand::ops

#endif  // STAGEHAND_OPS_CPU_CROSS_ENTROPY_H_
