// RMSNorm over the last axis (Llama's): forward, input-gradient (I), weight-gradient (W),
// fused. No mean subtraction and no bias, unlike LayerNorm.
#ifndef STAGEHAND_OPS_CPU_RMSNORM_H_
#define STAGEHAND_OPS_CPU_RMSNORM_H_

namespace stagehand::ops {

// Letters: N rows (B*T), C channels.
// out (N, C) = inp * rstd * weight, rstd = 1 / sqrt(mean(inp^2) + eps); saves rstd (N).
template <typename Real>
void RmsNormForward(Real* out, Real* rstd, const Real* inp, const Real* weight, int N, int C,
                    double eps);

// I: dinp (N, C) += rstd * (weight * dout - xhat * mean(weight * dout * xhat)), xhat = inp * rstd.
template <typename Real>
void RmsNormBackwardInput(Real* dinp, const Real* dout, const Real* inp, const Real* weight,
                          const Real* rstd, int N, int C);

// W: dweight (C) += sum_n dout * xhat. Deterministic (each channel summed by one thread).
template <typename Real>
void RmsNormBackwardWeights(Real* dweight, const Real* dout, const Real* inp, const Real* rstd,
                            int N, int C);

// I then W.
template <typename Real>
void RmsNormBackward(Real* dinp, Real* dweight, const Real* dout, const Real* inp,
                     const Real* weight, const Real* rstd, int N, int C);

}  // namespace stagehand::ops

#endif  // STAGEHAND_OPS_CPU_RMSNORM_H_
