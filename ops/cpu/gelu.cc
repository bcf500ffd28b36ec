// GELU (tanh approximation) on the CPU, elementwise, computed in Real as llm.c does.
// Not the erf GELU; the two differ by up to about 1e-3.
#include "ops/cpu/gelu.h"

#include <cmath>
#include <cstdint>

#include "ops/cpu/parallel.h"
#include "ops/cpu/vector_math.h"

namespace stagehand::ops {
namespace {

constexpr double kSqrtTwoOverPi = 0.7978845608028654;  // sqrt(2 / pi)
constexpr double kCubic = 0.044715;

}  // namespace

template <typename Real>
void GeluForward(Real* out, const Real* inp, int64_t n) {
  const Real scale = static_cast<Real>(kSqrtTwoOverPi);
  const Real cubic = static_cast<Real>(kCubic);
#pragma omp parallel for schedule(static) if (n >= internal::kMinParallelWork)
  for (int64_t i = 0; i < n; ++i) {
    const Real x = inp[i];
    out[i] = Real{0.5} * x * (Real{1} + internal::Tanh(scale * (x + cubic * x * x * x)));
  }
}

template <typename Real>
void GeluBackwardInput(Real* dinp, const Real* inp, const Real* dout, int64_t n) {
  const Real scale = static_cast<Real>(kSqrtTwoOverPi);
  const Real cubic = static_cast<Real>(kCubic);
#pragma omp parallel for schedule(static) if (n >= internal::kMinParallelWork)
  for (int64_t i = 0; i < n; ++i) {
    const Real x = inp[i];
    const Real tanh_out = internal::Tanh(scale * (x + cubic * x * x * x));
    const Real sech_squared = Real{1} - tanh_out * tanh_out;
    const Real local_grad =
        Real{0.5} * (Real{1} + tanh_out) +
        Real{0.5} * x * sech_squared * scale * (Real{1} + Real{3} * cubic * x * x);
    dinp[i] += local_grad * dout[i];
  }
}

template void GeluForward<float>(float*, const float*, int64_t);
template void GeluForward<double>(double*, const double*, int64_t);
template void GeluBackwardInput<float>(float*, const float*, const float*, int64_t);
template void GeluBackwardInput<double>(double*, const double*, const double*, int64_t);

}  // namespace stagehand::ops
