// SwiGLU on the CPU: elementwise, rows in parallel (results do not depend on threads).
#include "ops/cpu/swiglu.h"

#include <cmath>

#include "ops/cpu/parallel.h"

namespace stagehand::ops {
namespace {

template <typename Real>
Real Sigmoid(Real x) {
  return Real{1} / (Real{1} + std::exp(-x));
}

}  // namespace

template <typename Real>
void SwiGluForward(Real* out, const Real* inp, int64_t N, int H) {
  const int64_t work = N * H;
#pragma omp parallel for schedule(static) if (work >= internal::kMinParallelWork)
  for (int64_t n = 0; n < N; ++n) {
    const Real* gate = inp + n * 2 * H;
    const Real* up = gate + H;
    Real* y = out + n * H;
    for (int i = 0; i < H; ++i) y[i] = gate[i] * Sigmoid(gate[i]) * up[i];
  }
}

template <typename Real>
void SwiGluBackwardInput(Real* dinp, const Real* inp, const Real* dout, int64_t N, int H) {
  const int64_t work = N * H;
#pragma omp parallel for schedule(static) if (work >= internal::kMinParallelWork)
  for (int64_t n = 0; n < N; ++n) {
    const Real* gate = inp + n * 2 * H;
    const Real* up = gate + H;
    const Real* dy = dout + n * H;
    Real* dgate = dinp + n * 2 * H;
    Real* dup = dgate + H;
    for (int i = 0; i < H; ++i) {
      const Real s = Sigmoid(gate[i]);
      const Real silu = gate[i] * s;
      // silu'(x) = s + x s (1 - s)
      dgate[i] += dy[i] * up[i] * (s + gate[i] * s * (Real{1} - s));
      dup[i] += dy[i] * silu;
    }
  }
}

template void SwiGluForward<float>(float*, const float*, int64_t, int);
template void SwiGluForward<double>(double*, const double*, int64_t, int);
template void SwiGluBackwardInput<float>(float*, const float*, const float*, int64_t, int);
template void SwiGluBackwardInput<double>(double*, const double*, const double*, int64_t, int);

}  // namespace stagehand::ops
