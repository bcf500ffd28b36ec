// MoE dispatch: which expert row each (token, choice) goes to, with an optional capacity that
// drops the choices over it in token order, and the gather of token rows into expert order
// (forward) with its scatter-add (input-gradient). No weights, so no W call. Not an all-to-all:
// with expert parallelism the rows of other ranks' experts travel by a collective.
#ifndef STAGEHAND_OPS_CPU_MOE_DISPATCH_H_
#define STAGEHAND_OPS_CPU_MOE_DISPATCH_H_

#include <cstdint>
#include <vector>

namespace stagehand::ops {

// Letters: N tokens, E experts, K choices per token, R rows kept (R <= N*K), C channels.
// Rows are grouped by expert (expert 0's first); within an expert, in token order.
struct MoeRouting {
  int num_experts = 0;                  // E
  int top_k = 0;                        // K
  std::vector<int64_t> expert_offsets;  // (E + 1): expert e's rows are [offsets[e], offsets[e+1])
  std::vector<int64_t> row_token;       // (R) the token of each row
  std::vector<int64_t> choice_row;      // (N*K) the row of each choice; -1 when dropped
  std::vector<int64_t> tokens_per_expert;  // (E) choices per expert before dropping
  int64_t dropped = 0;                     // choices over capacity
  int64_t rows() const { return static_cast<int64_t>(row_token.size()); }
};

// The capacity of each expert: ceil(capacity_factor * N * K / E); capacity_factor <= 0:
// dropless (every choice kept, returns N*K).
int64_t MoeExpertCapacity(double capacity_factor, int64_t N, int E, int K);

// Routing from expert_index (N, K) (entries in [0, E)). Choices are taken in token order (token
// 0's choices first, then token 1's, ...); a choice whose expert already holds `capacity` rows is
// dropped. Deterministic; capacity >= N*K keeps every choice.
void BuildMoeRouting(MoeRouting* routing, const int32_t* expert_index, int64_t N, int E, int K,
                     int64_t capacity);

// F: expert_input (R, C) row r = x (N, C) row row_token[r].
template <typename Real>
void MoeDispatchForward(Real* expert_input, const Real* x, const MoeRouting& routing, int C);

// I: dx (N, C) += the sum over each token's kept choices (in choice order) of its rows of
// d_expert_input (R, C).
template <typename Real>
void MoeDispatchBackwardInput(Real* dx, const Real* d_expert_input, const MoeRouting& routing,
                              int64_t N, int C);

}  // namespace stagehand::ops

#endif  // STAGEHAND_OPS_CPU_MOE_DISPATCH_H_
