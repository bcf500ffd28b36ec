// MoE router after its linear (ops/cpu/linear.h): softmax over the experts, top-k choice with a
// deterministic tie-break, and the input-gradient back to the logits. Not the linear (no
// weights here, so no W call) and not the auxiliary losses (moe_load_balancing_loss.h,
// moe_z_loss.h).
#ifndef STAGEHAND_OPS_CPU_MOE_ROUTER_H_
#define STAGEHAND_OPS_CPU_MOE_ROUTER_H_

#include <cstdint>

namespace stagehand::ops {

// Letters: N tokens, E experts, K choices per token (1 <= K <= E).
// probs (N, E) = softmax(logits (N, E)) per token. expert_index (N, K): the K most probable
// experts of each token, most probable first; equal probabilities go to the lower expert index,
// so the choice is deterministic. gates (N, K) = probs at expert_index (not renormalised: the
// Switch / GShard gate). probs may alias logits.
template <typename Real>
void MoeRouterForward(Real* probs, int32_t* expert_index, Real* gates, const Real* logits,
                      int64_t N, int E, int K);

// Gates to probabilities with the routing held fixed: dprobs (N, E) += dgates (N, K) scattered
// to expert_index (N, K).
template <typename Real>
void MoeGatesBackwardInput(Real* dprobs, const Real* dgates, const int32_t* expert_index, int64_t N,
                           int E, int K);

// I of the softmax: dlogits (N, E) += probs * (dprobs - sum_e probs * dprobs) per token.
template <typename Real>
void MoeRouterBackwardInput(Real* dlogits, const Real* dprobs, const Real* probs, int64_t N, int E);

}  // namespace stagehand::ops

#endif  // STAGEHAND_OPS_CPU_MOE_ROUTER_H_
