// The MoE auxiliary load-balancing loss of Switch Transformer / GShard (Megatron's
// switch_load_balancing_loss_func): E * sum_e f_e * P_e, with f_e the share of the N*K routing
// choices that picked expert e and P_e the mean router probability of e. Forward and
// input-gradient w.r.t. the probabilities; f is a count, held fixed (it has no gradient).
// Not the coefficient: the caller scales the gradient by it.
#ifndef STAGEHAND_OPS_CPU_MOE_LOAD_BALANCING_LOSS_H_
#define STAGEHAND_OPS_CPU_MOE_LOAD_BALANCING_LOSS_H_

#include <cstdint>

namespace stagehand::ops {

// Letters: N tokens, E experts, K choices per token.
// probs (N, E) router probabilities; tokens_per_expert (E) choices per expert before any drop
// (they sum to N*K). Returns E * sum_e (tokens_per_expert[e] / (N K)) * (sum_n probs[n, e] / N):
// 1 when routing and probabilities are uniform, up to E when all collapse on one expert.
template <typename Real>
double MoeLoadBalancingLossForward(const Real* probs, const int64_t* tokens_per_expert, int64_t N,
                                   int E, int K);

// I: dprobs (N, E) += dloss * E * tokens_per_expert[e] / (N K N).
template <typename Real>
void MoeLoadBalancingLossBackwardInput(Real* dprobs, const int64_t* tokens_per_expert, int64_t N,
                                       int E, int K, double dloss);

}  // namespace stagehand::ops

#endif  // STAGEHAND_OPS_CPU_MOE_LOAD_BALANCING_LOSS_H_
