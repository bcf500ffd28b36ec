// MoE dispatch on the CPU: routing is a serial pass in token order (that order defines which
// choices are dropped); gather and scatter run tokens in parallel, each row summed by one thread.
#include "ops/cpu/moe_dispatch.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ops/cpu/parallel.h"

namespace stagehand::ops {

int64_t MoeExpertCapacity(double capacity_factor, int64_t N, int E, int K) {
  if (capacity_factor <= 0.0) return N * K;
  const double capacity = std::ceil(capacity_factor * double(N) * K / E);
  return std::min<int64_t>(N * K, static_cast<int64_t>(capacity));
}

void BuildMoeRouting(MoeRouting* r, const int32_t* expert_index, int64_t N, int E, int K,
                     int64_t capacity) {
  r->num_experts = E;
  r->top_k = K;
  r->tokens_per_expert.assign(E, 0);
  r->choice_row.assign(N * K, -1);
  r->dropped = 0;
  // Phase 1: kept choices per expert, in token order.
  std::vector<int64_t> kept(E, 0);
  std::vector<int64_t> slot(N * K, -1);  // the choice's place among its expert's rows
  for (int64_t i = 0; i < N * K; ++i) {
    const int e = expert_index[i];
    ++r->tokens_per_expert[e];
    if (kept[e] < capacity) {
      slot[i] = kept[e]++;
    } else {
      ++r->dropped;
    }
  }
  // Phase 2: expert offsets, then each kept choice's row.
  r->expert_offsets.assign(E + 1, 0);
  for (int e = 0; e < E; ++e) r->expert_offsets[e + 1] = r->expert_offsets[e] + kept[e];
  r->row_token.assign(r->expert_offsets[E], 0);
  for (int64_t i = 0; i < N * K; ++i) {
    if (slot[i] < 0) continue;
    const int64_t row = r->expert_offsets[expert_index[i]] + slot[i];
    r->choice_row[i] = row;
    r->row_token[row] = i / K;
  }
}

template <typename Real>
void MoeDispatchForward(Real* expert_input, const Real* x, const MoeRouting& routing, int C) {
  const int64_t R = routing.rows();
#pragma omp parallel for schedule(static) if (R * C >= internal::kMinParallelWork)
  for (int64_t r = 0; r < R; ++r) {
    std::memcpy(expert_input + r * C, x + routing.row_token[r] * C, sizeof(Real) * C);
  }
}

template <typename Real>
void MoeDispatchBackwardInput(Real* dx, const Real* d_expert_input, const MoeRouting& routing,
                              int64_t N, int C) {
  const int K = routing.top_k;
#pragma omp parallel for schedule(static) if (N * K * C >= internal::kMinParallelWork)
  for (int64_t n = 0; n < N; ++n) {
    for (int k = 0; k < K; ++k) {
      const int64_t row = routing.choice_row[n * K + k];
      if (row < 0) continue;
      const Real* d = d_expert_input + row * C;
      for (int c = 0; c < C; ++c) dx[n * C + c] += d[c];
    }
  }
}

template void MoeDispatchForward<float>(float*, const float*, const MoeRouting&, int);
template void MoeDispatchForward<double>(double*, const double*, const MoeRouting&, int);
template void MoeDispatchBackwardInput<float>(float*, const float*, const MoeRouting&, int64_t,
                                              int);
template void MoeDispatchBackwardInput<double>(double*, const double*, const MoeRouting&, int64_t,
                                               int);

}  // namespace stagehand::ops
