// The load-balancing loss on the CPU: sums in double, serial per expert (a few E x N adds).
#include "ops/cpu/moe_load_balancing_loss.h"

#include <vector>

namespace stagehand::ops {

template <typename Real>
double MoeLoadBalancingLossForward(const Real* probs, const int64_t* tokens_per_expert, int64_t N,
                                   int E, int K) {
  std::vector<double> mean_prob(E, 0.0);
  for (int64_t n = 0; n < N; ++n) {
    for (int e = 0; e < E; ++e) mean_prob[e] += probs[n * E + e];
  }
  double loss = 0.0;
  for (int e = 0; e < E; ++e) {
    const double share = static_cast<double>(tokens_per_expert[e]) / (double(N) * K);
    loss += share * (mean_prob[e] / double(N));
  }
  return E * loss;
}

template <typename Real>
void MoeLoadBalancingLossBackwardInput(Real* dprobs, const int64_t* tokens_per_expert, int64_t N,
                                       int E, int K, double dloss) {
  std::vector<Real> d(E);
  for (int e = 0; e < E; ++e) {
    d[e] = static_cast<Real>(dloss * E * static_cast<double>(tokens_per_expert[e]) /
                             (double(N) * K * double(N)));
  }
  for (int64_t n = 0; n < N; ++n) {
    for (int e = 0; e < E; ++e) dprobs[n * E + e] += d[e];
  }
}

template double MoeLoadBalancingLossForward<float>(const float*, const int64_t*, int64_t, int, int);
template double MoeLoadBalancingLossForward<double>(const double*, const int64_t*, int64_t, int,
                                                    int);
template void MoeLoadBalancingLossBackwardInput<float>(float*, const int64_t*, int64_t, int, int,
                                                       double);
template void MoeLoadBalancingLossBackwardInput<double>(double*, const int64_t*, int64_t, int, int,
                                                        double);

}  // namespace stagehand::ops
