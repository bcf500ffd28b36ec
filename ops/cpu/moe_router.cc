// MoE router on the CPU: tokens in parallel, each token's softmax and top-k on one thread (results
// do not depend on the thread count).
#include "ops/cpu/moe_router.h"

#include <cmath>

#include "ops/cpu/parallel.h"

namespace stagehand::ops {

template <typename Real>
void MoeRouterForward(Real* probs, int32_t* expert_index, Real* gates, const Real* logits,
                      int64_t N, int E, int K) {
  const int64_t work = N * E * K;
#pragma omp parallel for schedule(static) if (work >= internal::kMinParallelWork)
  for (int64_t n = 0; n < N; ++n) {
    const Real* x = logits + n * E;
    Real* p = probs + n * E;
    Real max = x[0];
    for (int e = 1; e < E; ++e) max = x[e] > max ? x[e] : max;
    double sum = 0.0;
    for (int e = 0; e < E; ++e) {
      p[e] = std::exp(x[e] - max);
      sum += p[e];
    }
    const Real inv = static_cast<Real>(1.0 / sum);
    for (int e = 0; e < E; ++e) p[e] *= inv;
    // Top-k by selection: choice k takes the most probable expert not yet chosen; a strict
    // comparison keeps the lowest index among equal probabilities.
    int32_t* index = expert_index + n * K;
    for (int k = 0; k < K; ++k) {
      int best = -1;
      for (int e = 0; e < E; ++e) {
        bool taken = false;
        for (int j = 0; j < k; ++j) taken = taken || index[j] == e;
        if (!taken && (best < 0 || p[e] > p[best])) best = e;
      }
      index[k] = best;
      gates[n * K + k] = p[best];
    }
  }
}

template <typename Real>
void MoeGatesBackwardInput(Real* dprobs, const Real* dgates, const int32_t* expert_index, int64_t N,
                           int E, int K) {
  for (int64_t n = 0; n < N; ++n) {
    for (int k = 0; k < K; ++k) dprobs[n * E + expert_index[n * K + k]] += dgates[n * K + k];
  }
}

template <typename Real>
void MoeRouterBackwardInput(Real* dlogits, const Real* dprobs, const Real* probs, int64_t N,
                            int E) {
  const int64_t work = N * E;
#pragma omp parallel for schedule(static) if (work >= internal::kMinParallelWork)
  for (int64_t n = 0; n < N; ++n) {
    const Real* p = probs + n * E;
    const Real* dp = dprobs + n * E;
    double dot = 0.0;
    for (int e = 0; e < E; ++e) dot += static_cast<double>(p[e]) * dp[e];
    for (int e = 0; e < E; ++e) dlogits[n * E + e] += p[e] * (dp[e] - static_cast<Real>(dot));
  }
}

#define STAGEHAND_INSTANTIATE_MOE_ROUTER(Real)                                                  \
  template void MoeRouterForward<Real>(Real*, int32_t*, Real*, const Real*, int64_t, int, int); \
  template void MoeGatesBackwardInput<Real>(Real*, const Real*, const int32_t*, int64_t, int,   \
                                            int);                                               \
  template void MoeRouterBackwardInput<Real>(Real*, const Real*, const Real*, int64_t, int);
STAGEHAND_INSTANTIATE_MOE_ROUTER(float)
STAGEHAND_INSTANTIATE_MOE_ROUTER(double)

}  // namespace stagehand::ops
