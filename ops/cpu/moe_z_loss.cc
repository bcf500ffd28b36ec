// The router z-loss on the CPU: per-token logsumexp in double, serial (E x N work).
#include "ops/cpu/moe_z_loss.h"

#include <cmath>

namespace stagehand::ops {
namespace {

template <typename Real>
double LogSumExp(const Real* x, int E) {
  double max = x[0];
  for (int e = 1; e < E; ++e) max = x[e] > max ? x[e] : max;
  double sum = 0.0;
  for (int e = 0; e < E; ++e) sum += std::exp(x[e] - max);
  return max + std::log(sum);
}

}  // namespace

template <typename Real>
double MoeZLossForward(const Real* logits, int64_t N, int E) {
  double sum = 0.0;
  for (int64_t n = 0; n < N; ++n) {
    const double z = LogSumExp(logits + n * E, E);
    sum += z * z;
  }
  return sum / double(N);
}

template <typename Real>
void MoeZLossBackwardInput(Real* dlogits, const Real* logits, int64_t N, int E, double dloss) {
  for (int64_t n = 0; n < N; ++n) {
    const Real* x = logits + n * E;
    const double z = LogSumExp(x, E);
    const double scale = dloss * 2.0 * z / double(N);
    for (int e = 0; e < E; ++e) dlogits[n * E + e] += static_cast<Real>(scale * std::exp(x[e] - z));
  }
}

template double MoeZLossForward<float>(const float*, int64_t, int);
template double MoeZLossForward<double>(const double*, int64_t, int);
template void MoeZLossBackwardInput<float>(float*, const float*, int64_t, int, double);
template void MoeZLossBackwardInput<double>(double*, const double*, int64_t, int, double);

}  // namespace stagehand::ops
