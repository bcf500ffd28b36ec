// Causal multi-head self-attention core: softmax(q k^T / sqrt(hs), causal) v, from a packed
// qkv tensor. Forward and input-gradient; no weights (the projections are linear ops).
// Not flash attention: the (T, T) probabilities are saved for the backward.
#ifndef STAGEHAND_OPS_CPU_ATTENTION_H_
#define STAGEHAND_OPS_CPU_ATTENTION_H_

#include <cstdint>

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

// Grouped-query attention (Llama's GQA; NKV == NH is multi-head attention, NKV == 1
// multi-query) with optional per-document causal masks for packed sequences.
// Letters: NH query heads, NKV key/value heads (NH % NKV == 0), hs head size.
// qkv (B, T, (NH + 2 NKV) hs): [q (NH, hs) | k (NKV, hs) | v (NKV, hs)] along the last axis;
// query head h reads key/value head h / (NH / NKV). out (B, T, NH hs); att (B, NH, T, T).
// doc_start (B, T) or null: query t of row b sees keys [doc_start[b T + t], t] (the first
// position of its document), so packed documents never attend across their boundary; null
// sees [0, t]. With NKV == NH and no doc_start, results are bitwise AttentionForward's.
struct AttentionShape {
  int B = 1, T = 1, NH = 1, NKV = 1, hs = 1;
};

template <typename Real>
void GroupedAttentionForward(Real* out, Real* att, const Real* qkv, const AttentionShape& shape,
                             const int32_t* doc_start);

// I: dqkv += gradient of out w.r.t. qkv applied to dout. Key/value gradients of a group are
// summed over its query heads in head order (one thread per (b, kv head): deterministic).
template <typename Real>
void GroupedAttentionBackwardInput(Real* dqkv, const Real* dout, const Real* qkv, const Real* att,
                                   const AttentionShape& shape);

}  // namespace stagehand::ops

#endif  // STAGEHAND_OPS_CPU_ATTENTION_H_
