// SwiGLU (Llama's MLP activation): out = silu(gate) * up, from one (N, 2H) tensor holding
// [gate | up] per row (the gate and up projections fused into one linear). Forward and
// input-gradient; no weights, so no W call.
#ifndef STAGEHAND_OPS_CPU_SWIGLU_H_
#define STAGEHAND_OPS_CPU_SWIGLU_H_

#include <cstdint>

namespace stagehand::ops {

// Letters: N rows, H hidden width. inp (N, 2H), out (N, H); silu(x) = x / (1 + exp(-x)).
template <typename Real>
void SwiGluForward(Real* out, const Real* inp, int64_t N, int H);

// I: dinp (N, 2H) += [dout * up * silu'(gate) | dout * silu(gate)].
template <typename Real>
void SwiGluBackwardInput(Real* dinp, const Real* inp, const Real* dout, int64_t N, int H);

}  // namespace stagehand::ops

#endif  // STAGEHAND_OPS_CPU_SWIGLU_H_
