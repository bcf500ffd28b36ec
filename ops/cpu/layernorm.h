// LayerNorm over the last axis: forward, input-gradient (B), weight-gradient (W), fused.
// Not an RMSNorm; eps is GPT-2's 1e-5.
#ifndef STAGEHAND_OPS_CPU_LAYERNORM_H_
#define STAGEHAND_OPS_CPU_LAYERNORM_H_

namespace stagehand::ops {

// Letters: N rows (B*T), C channels.
// out (N, C) = (inp - mean) * rstd * weight + bias; saves mean (N), rstd (N).
template <typename Real>
void LayerNormForward(Real* out, Real* mean, Real* rstd, const Real* inp, const Real* weight,
                      const Real* bias, int N, int C);

// B: dinp (N, C) += d(out)/d(inp) applied to dout (N, C).
template <typename Real>
void LayerNormBackwardInput(Real* dinp, const Real* dout, const Real* inp, const Real* weight,
                            const Real* mean, const Real* rstd, int N, int C);

// W: dweight (C) += sum_n dout * xhat; dbias (C) += sum_n dout. Deterministic.
template <typename Real>
void LayerNormBackwardWeights(Real* dweight, Real* dbias, const Real* dout, const Real* inp,
                              const Real* mean, const Real* rstd, int N, int C);

// I then W.
template <typename Real>
void LayerNormBackward(Real* dinp, Real* dweight, Real* dbias, const Real* dout, const Real* inp,
                       const Real* weight, const Real* mean, const Real* rstd, int N, int C);

}  // namespace stagehand::ops

#endif  // STAGEHAND_OPS_CPU_LAYERNORM_H_
