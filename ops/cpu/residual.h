// Residual add: forward and input-gradient (to both inputs). No weights.
#ifndef STAGEHAND_OPS_CPU_RESIDUAL_H_
#define STAGEHAND_OPS_CPU_RESIDUAL_H_

#include <cstdint>

namespace stagehand::ops {

// out (n) = a + b
template <typename Real>
void ResidualForward(Real* out, const Real* a, const Real* b, int64_t n);

// B: da (n) += dout; db (n) += dout. da and db may alias (then it adds twice).
template <typename Real>
void ResidualBackwardInput(Real* da, Real* db, const Real* dout, int64_t n);

}  // namespace stagehand::ops

#endif  // STAGEHAND_OPS_CPU_RESIDUAL_H_
