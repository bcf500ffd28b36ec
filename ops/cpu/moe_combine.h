// MoE combine: each token's output is the gate-weighted sum of its kept experts' rows. Forward
// and input-gradient (to the expert rows and to the gates); no weights, so no W call. Not an
// all-to-all (see moe_dispatch.h).
#ifndef STAGEHAND_OPS_CPU_MOE_COMBINE_H_
#define STAGEHAND_OPS_CPU_MOE_COMBINE_H_

#include <cstdint>

#include "ops/cpu/moe_dispatch.h"

namespace stagehand::ops {

// Letters: N tokens, K choices per token, R rows kept, C channels.
// F: out (N, C) = sum over token n's kept choices k (in order) of gates[n, k] * expert_output
// row choice_row[n, k]; a token whose choices were all dropped gets zeros.
template <typename Real>
void MoeCombineForward(Real* out, const Real* expert_output, const Real* gates,
                       const MoeRouting& routing, int64_t N, int C);

// I: d_expert_output (R, C) = gates[n, k] * dout[n] for the choice (n, k) of each row (written,
// not accumulated: every row has one choice); dgates (N, K) = <dout[n], expert_output row> for
// kept choices and 0 for dropped ones (written).
template <typename Real>
void MoeCombineBackwardInput(Real* d_expert_output, Real* dgates, const Real* dout,
                             const Real* expert_output, const Real* gates,
                             const MoeRouting& routing, int64_t N, int C);

}  // namespace stagehand::ops

#endif  // STAGEHAND_OPS_CPU_MOE_COMBINE_H_
