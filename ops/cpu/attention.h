// Causal multi-head self-attention core: softmax(q k^T / sqrt(hs), causal) v, from a packed
// qkv tensor. Forward and input-gradient; no weights (the projections are linear ops).
// Not flash attention: the (T, T) probabilities are saved for the backward.
#ifndef STAGEHAND_OPS_CPU_ATTENTION_H_
#define STAGEHAND_OPS_CPU_ATTENTION_H_

namespace stagehand::ops {

// Threads: results are bitwise the same for any OpenMP thread count. OpenBLAS splits a GEMM
// among its own threads in a way that changes rounding, so these calls set OpenBLAS to one
// thread (process-wide) and parallelise with OpenMP instead; see blas.h.
// Letters: B batch, T time, C channels, NH heads, hs = C / NH head size.
// qkv (B, T, 3C): [q | k | v] along the last axis, each (NH, hs) head-major.
// out (B, T, C);  att (B, NH, T, T) saved softmax probabilities (zero above the diagonal).
template <typename Real>
void AttentionForward(Real* out, Real* att, const Real* qkv, int B, int T, int C, int NH);

// B: dqkv (B, T, 3C) += gradient of out w.r.t. qkv applied to dout (B, T, C).
template <typename Real>
void AttentionBackwardInput(Real* dqkv, const Real* dout, const Real* qkv, const Real* att, int B,
                            int T, int C, int NH);

}  // namespace stagehand::ops

#endif  // STAGEHAND_OPS_CPU_ATTENTION_H_
