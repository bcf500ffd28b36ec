// GELU, tanh approximation (GPT-2's): forward and input-gradient. It has no weights, so
// no W call; the fused backward is the B call.
#ifndef STAGEHAND_OPS_CPU_GELU_H_
#define STAGEHAND_OPS_CPU_GELU_H_

#include <cstdint>

namespace stagehand::ops {

// out (n) = 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
template <typename Real>
void GeluForward(Real* out, const Real* inp, int64_t n);

// B: dinp (n) += gelu'(inp) * dout.
template <typename Real>
void GeluBackwardInput(Real* dinp, const Real* inp, const Real* dout, int64_t n);

}  // namespace stagehand::ops

#endif  // STAGEHAND_OPS_CPU_GELU_H_
