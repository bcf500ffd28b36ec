// MoE combine on the CPU: tokens in parallel, each token's sum in choice order on one thread.
#include "ops/cpu/moe_combine.h"

#include "ops/cpu/parallel.h"

namespace stagehand::ops {

template <typename Real>
void MoeCombineForward(Real* out, const Real* expert_output, const Real* gates,
                       const MoeRouting& routing, int64_t N, int C) {
  const int K = routing.top_k;
#pragma omp parallel for schedule(static) if (N * K * C >= internal::kMinParallelWork)
  for (int64_t n = 0; n < N; ++n) {
    Real* y = out + n * C;
    for (int c = 0; c < C; ++c) y[c] = Real{0};
    for (int k = 0; k < K; ++k) {
      const int64_t row = routing.choice_row[n * K + k];
      if (row < 0) continue;
      const Real g = gates[n * K + k];
      const Real* x = expert_output + row * C;
      for (int c = 0; c < C; ++c) y[c] += g * x[c];
    }
  }
}

template <typename Real>
void MoeCombineBackwardInput(Real* d_expert_output, Real* dgates, const Real* dout,
                             const Real* expert_output, const Real* gates,
                             const MoeRouting& routing, int64_t N, int C) {
  const int K = routing.top_k;
#pragma omp parallel for schedule(static) if (N * K * C >= internal::kMinParallelWork)
  for (int64_t n = 0; n < N; ++n) {
    const Real* dy = dout + n * C;
    for (int k = 0; k < K; ++k) {
      const int64_t row = routing.choice_row[n * K + k];
      if (row < 0) {
        dgates[n * K + k] = Real{0};
        continue;
      }
      const Real g = gates[n * K + k];
      const Real* x = expert_output + row * C;
      Real* dx = d_expert_output + row * C;
      double dot = 0.0;
      for (int c = 0; c < C; ++c) {
        dx[c] = g * dy[c];
        dot += static_cast<double>(dy[c]) * x[c];
      }
      dgates[n * K + k] = static_cast<Real>(dot);
    }
  }
}

template void MoeCombineForward<float>(float*, const float*, const float*, const MoeRouting&,
                                       int64_t, int);
template void MoeCombineForward<double>(double*, const double*, const double*, const MoeRouting&,
                                        int64_t, int);
template void MoeCombineBackwardInput<float>(float*, float*, const float*, const float*,
                                             const float*, const MoeRouting&, int64_t, int);
template void MoeCombineBackwardInput<double>(double*, double*, const double*, const double*,
                                              const double*, const MoeRouting&, int64_t, int);

}  // namespace stagehand::ops
