// AdamW on the CPU over flat buffers, computed in double and stored as Real; plus the
// deterministic sum of squares and clip factor for global-norm clipping. Not a schedule.
#include "ops/cpu/adamw.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "ops/cpu/lane_sum.h"
#include "ops/cpu/parallel.h"

namespace stagehand::ops {
namespace {

// SumOfSquares sums fixed blocks of this many elements (any thread may take any block), then
// adds the block sums in block order: the result never depends on the number of threads.
constexpr int64_t kSumBlock = 1 << 14;

}  // namespace

template <typename Real>
double SumOfSquares(const Real* x, int64_t n) {
  const int64_t num_blocks = (n + kSumBlock - 1) / kSumBlock;
  std::vector<double> block_sums(num_blocks);
#pragma omp parallel for schedule(static) if (n >= internal::kMinParallelWork)
  for (int64_t block = 0; block < num_blocks; ++block) {
    const Real* begin = x + block * kSumBlock;
    const int64_t size = std::min(kSumBlock, n - block * kSumBlock);
    block_sums[block] = internal::LaneSum(size, [&](int64_t i) {
      const double value = begin[i];
      return value * value;
    });
  }
  double total = 0.0;
  for (double block_sum : block_sums) total += block_sum;
  return total;
}

double ClipScale(double global_norm, double max_norm) {
  if (max_norm <= 0.0 || !(global_norm > max_norm)) return 1.0;
  return max_norm / global_norm;
}

template <typename Real>
void AdamWUpdate(Real* params, const Real* grads, Real* m, Real* v, int64_t n,
                 const AdamWOptions& options, int step, double grad_scale) {
  const double beta1 = options.beta1;
  const double beta2 = options.beta2;
  const double learning_rate = options.learning_rate;
  const double epsilon = options.epsilon;
  const double weight_decay = options.weight_decay;
  const double bias_correction1 = 1.0 - std::pow(beta1, step);
  const double bias_correction2 = 1.0 - std::pow(beta2, step);
#pragma omp parallel for schedule(static) if (n >= internal::kMinParallelWork)
  for (int64_t i = 0; i < n; ++i) {
    const double grad = static_cast<double>(grads[i]) * grad_scale;
    const double m_i = beta1 * static_cast<double>(m[i]) + (1.0 - beta1) * grad;
    const double v_i = beta2 * static_cast<double>(v[i]) + (1.0 - beta2) * grad * grad;
    const double m_hat = m_i / bias_correction1;
    const double v_hat = v_i / bias_correction2;
    double param = params[i];
    param -= learning_rate * (m_hat / (std::sqrt(v_hat) + epsilon) + weight_decay * param);
    m[i] = static_cast<Real>(m_i);
    v[i] = static_cast<Real>(v_i);
    params[i] = static_cast<Real>(param);
  }
}

template double SumOfSquares<float>(const float*, int64_t);
template double SumOfSquares<double>(const double*, int64_t);
template void AdamWUpdate<float>(float*, const float*, float*, float*, int64_t, const AdamWOptions&,
                                 int, double);
template void AdamWUpdate<double>(double*, const double*, double*, double*, int64_t,
                                  const AdamWOptions&, int, double);

}  // namespace stagehand::ops
