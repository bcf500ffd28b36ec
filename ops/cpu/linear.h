// Linear layer out = inp @ weight^T + bias through BLAS (cblas_sgemm / cblas_dgemm):
// forward, input-gradient (B), weight-gradient (W), fused. Not a batched or quantised GEMM.
#ifndef STAGEHAND_OPS_CPU_LINEAR_H_
#define STAGEHAND_OPS_CPU_LINEAR_H_

namespace stagehand::ops {

// Threads: results are bitwise the same for any OpenMP thread count. OpenBLAS splits a GEMM
// among its own threads in a way that changes rounding, so these calls set OpenBLAS to one
// thread (process-wide) and parallelise with OpenMP instead; see blas.h.
// Letters: N rows (B*T), C input channels, OC output channels.
// out (N, OC) = inp (N, C) @ weight (OC, C)^T + bias (OC); bias may be null.
template <typename Real>
void LinearForward(Real* out, const Real* inp, const Real* weight, const Real* bias, int N, int C,
                   int OC);

// B: dinp (N, C) += dout (N, OC) @ weight (OC, C).
template <typename Real>
void LinearBackwardInput(Real* dinp, const Real* dout, const Real* weight, int N, int C, int OC);

// W: dweight (OC, C) += dout^T (OC, N) @ inp (N, C); dbias (OC) += sum_n dout (may be null).
template <typename Real>
void LinearBackwardWeights(Real* dweight, Real* dbias, const Real* dout, const Real* inp, int N,
                           int C, int OC);

// I then W.
template <typename Real>
void LinearBackward(Real* dinp, Real* dweight, Real* dbias, const Real* dout, const Real* inp,
                    const Real* weight, int N, int C, int OC);

}  // namespace stagehand::ops

#endif  // STAGEHAND_OPS_CPU_LINEAR_H_
