// The router z-loss of ST-MoE (Zoph et al. 2022): mean over tokens of logsumexp(logits)^2, which
// keeps router logits small. Forward and input-gradient w.r.t. the logits; no weights.
// Not the coefficient: the caller scales the gradient by it.
#ifndef STAGEHAND_OPS_CPU_MOE_Z_LOSS_H_
#define STAGEHAND_OPS_CPU_MOE_Z_LOSS_H_

#include <cstdint>

namespace stagehand::ops {

// Letters: N tokens, E experts. Returns (1/N) sum_n logsumexp_e(logits[n, e])^2.
template <typename Real>
double MoeZLossForward(const Real* logits, int64_t N, int E);

// I: dlogits (N, E) += dloss * 2 z_n softmax(logits)[n, e] / N, z_n = logsumexp(logits[n]).
template <typename Real>
void MoeZLossBackwardInput(Real* dlogits, const Real* logits, int64_t N, int E, double dloss);

}  // namespace stagehand::ops

#endif  // STAGEHAND_OPS_CPU_MOE_Z_LOSS_H_
