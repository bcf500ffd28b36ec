// Residual add on the CPU, elementwise: forward and the gradient to both inputs.
// Not fused with anything; no restrict pointers, because da and db may alias.
#include "ops/cpu/residual.h"

#include <cstdint>

#include "ops/cpu/parallel.h"

namespace stagehand::ops {

template <typename Real>
void ResidualForward(Real* out, const Real* a, const Real* b, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= internal::kMinParallelWork)
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

template <typename Real>
void ResidualBackwardInput(Real* da, Real* db, const Real* dout, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= internal::kMinParallelWork)
  for (int64_t i = 0; i < n; ++i) {
    da[i] += dout[i];
    db[i] += dout[i];
  }
}

template void ResidualForward<float>(float*, const float*, const float*, int64_t);
template void ResidualForward<double>(double*, const double*, const double*, int64_t);
template void ResidualBackwardInput<float>(float*, float*, const float*, int64_t);
template void ResidualBackwardInput<double>(double*, double*, const double*, int64_t);

}  // namespace stagehand::ops
