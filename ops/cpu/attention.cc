// Causal self-attention on the CPU: per (batch, head) BLAS GEMMs over strided views of qkv,
// and an exact causal softmax. Not flash attention: the (T, T) probabilities are materialised.
#include "ops/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "ops/cpu/blas.h"
#include "ops/cpu/lane_sum.h"
#include "ops/cpu/parallel.h"
#include "ops/cpu/vector_math.h"

namespace stagehand::ops {
namespace {

// Letters: B batch, T time, C channels, NH heads, hs = C / NH head size.
// Per (b, h), q, k and v are (T, hs) views into qkv with row stride 3C; out and dout are
// (T, hs) views with row stride C; att is the contiguous (T, T) slice att[b, h].
//
// Rows are processed in blocks of kRowBlock query positions; a block [r0, r1) only ever sees
// keys [0, r1), so the GEMMs skip most of the masked upper triangle (about 3/8 of the work at
// T = 256) while the mask itself stays exact: masked probabilities are written as 0.
constexpr int kRowBlock = 64;

// row (length) holds scaled scores; softmax over entries [lo, visible), zero the rest.
template <typename Real>
void CausalSoftmaxRow(Real* row, int lo, int visible, int length) {
  std::fill(row, row + lo, Real{0});
  Real* x = row + lo;
  const int n = visible - lo;
  const Real max_score = internal::MaxOf(x, n);
  for (int i = 0; i < n; ++i) x[i] = internal::Exp(x[i] - max_score);
  const double sum = internal::LaneSum(n, [&](int64_t i) { return x[i]; });
  const Real inverse_sum = static_cast<Real>(1.0 / sum);
  for (int i = 0; i < n; ++i) x[i] *= inverse_sum;
  std::fill(row + visible, row + length, Real{0});
}

// Strided (T, hs) views of one (b, query head) pair: q, k, v in qkv; out/dout in (B, T, NH hs).
struct HeadViews {
  int64_t q, k, v, out;  // element offsets
};

HeadViews Views(const AttentionShape& s, int b, int h) {
  const int64_t stride = int64_t{s.NH + 2 * s.NKV} * s.hs;
  const int g = h / (s.NH / s.NKV);
  const int64_t row = int64_t{b} * s.T * stride;
  return HeadViews{row + int64_t{h} * s.hs, row + int64_t{s.NH + g} * s.hs,
                   row + int64_t{s.NH + s.NKV + g} * s.hs,
                   int64_t{b} * s.T * s.NH * s.hs + h * s.hs};
}

}  // namespace

template <typename Real>
void GroupedAttentionForward(Real* out, Real* att, const Real* qkv, const AttentionShape& s,
                             const int32_t* doc_start) {
  const int T = s.T, hs = s.hs, NH = s.NH;
  const int qkv_stride = (s.NH + 2 * s.NKV) * hs;
  const int out_stride = NH * hs;
  const int group = s.NH / s.NKV;
  const Real scale = static_cast<Real>(1.0 / std::sqrt(static_cast<double>(hs)));
  internal::KeepBlasSingleThreaded();  // the threads are ours, one (b, kv head) each
  const int64_t work = int64_t{s.B} * NH * T * T * hs;
#pragma omp parallel for schedule(static) if (work >= internal::kMinParallelWork)
  for (int bg = 0; bg < s.B * s.NKV; ++bg) {
    const int b = bg / s.NKV;
    for (int h = (bg % s.NKV) * group; h < (bg % s.NKV + 1) * group; ++h) {
      const HeadViews view = Views(s, b, h);
      const Real* q = qkv + view.q;                                     // (T, hs)
      const Real* k = qkv + view.k;                                     // (T, hs)
      const Real* v = qkv + view.v;                                     // (T, hs)
      Real* out_bh = out + view.out;                                    // (T, hs)
      Real* att_bh = att + (static_cast<int64_t>(b) * NH + h) * T * T;  // (T, T)
      for (int r0 = 0; r0 < T; r0 += kRowBlock) {
        const int r1 = std::min(T, r0 + kRowBlock);
        const int rows = r1 - r0;
        Real* att_rows = att_bh + static_cast<int64_t>(r0) * T;  // (rows, T)
        // att[r0:r1, 0:r1] = scale * q[r0:r1] @ k[0:r1]^T
        internal::Gemm(CblasNoTrans, CblasTrans, rows, r1, hs, scale, q + int64_t{r0} * qkv_stride,
                       qkv_stride, k, qkv_stride, Real{0}, att_rows, T);
        for (int t = r0; t < r1; ++t) {
          const int lo = doc_start == nullptr ? 0 : doc_start[int64_t{b} * T + t];
          CausalSoftmaxRow(att_bh + int64_t{t} * T, lo, t + 1, T);
        }
        // out[r0:r1] = att[r0:r1, 0:r1] @ v[0:r1]
        internal::Gemm(CblasNoTrans, CblasNoTrans, rows, hs, r1, Real{1}, att_rows, T, v,
                       qkv_stride, Real{0}, out_bh + int64_t{r0} * out_stride, out_stride);
      }
    }
  }
}

template <typename Real>
void GroupedAttentionBackwardInput(Real* dqkv, const Real* dout, const Real* qkv, const Real* att,
                                   const AttentionShape& s) {
  const int T = s.T, hs = s.hs, NH = s.NH;
  const int qkv_stride = (s.NH + 2 * s.NKV) * hs;
  const int out_stride = NH * hs;
  const int group = s.NH / s.NKV;
  const Real scale = static_cast<Real>(1.0 / std::sqrt(static_cast<double>(hs)));
  internal::KeepBlasSingleThreaded();  // the threads are ours, one (b, kv head) each
  const int64_t work = int64_t{s.B} * NH * T * T * hs;
#pragma omp parallel if (work >= internal::kMinParallelWork)
  {
    // dscores for one row block: (kRowBlock, T), of which (rows, r1) is used.
    std::vector<Real> dscores(static_cast<size_t>(std::min(T, kRowBlock)) * T);
#pragma omp for schedule(static)
    for (int bg = 0; bg < s.B * s.NKV; ++bg) {
      const int b = bg / s.NKV;
      for (int h = (bg % s.NKV) * group; h < (bg % s.NKV + 1) * group; ++h) {
        const HeadViews view = Views(s, b, h);
        const Real* q = qkv + view.q;                                           // (T, hs)
        const Real* k = qkv + view.k;                                           // (T, hs)
        const Real* v = qkv + view.v;                                           // (T, hs)
        Real* dq = dqkv + view.q;                                               // (T, hs)
        Real* dk = dqkv + view.k;                                               // (T, hs)
        Real* dv = dqkv + view.v;                                               // (T, hs)
        const Real* dout_bh = dout + view.out;                                  // (T, hs)
        const Real* att_bh = att + (static_cast<int64_t>(b) * NH + h) * T * T;  // (T, T)
        for (int r0 = 0; r0 < T; r0 += kRowBlock) {
          const int r1 = std::min(T, r0 + kRowBlock);
          const int rows = r1 - r0;
          const Real* att_rows = att_bh + static_cast<int64_t>(r0) * T;             // (rows, T)
          const Real* dout_rows = dout_bh + static_cast<int64_t>(r0) * out_stride;  // (rows, hs)
          // datt (rows, r1) = dout[r0:r1] @ v[0:r1]^T
          internal::Gemm(CblasNoTrans, CblasTrans, rows, r1, hs, Real{1}, dout_rows, out_stride, v,
                         qkv_stride, Real{0}, dscores.data(), T);
          // Softmax backward, row by row: dscore = att * (datt - sum(att * datt)). Masked
          // probabilities are exactly 0, so they add nothing to the sum and get dscore 0
          // whatever the mask (causal or per document).
          for (int i = 0; i < rows; ++i) {
            const Real* a = att_rows + static_cast<int64_t>(i) * T;
            Real* d = dscores.data() + static_cast<int64_t>(i) * T;
            const int visible = r0 + i + 1;
            const Real dot = static_cast<Real>(
                internal::LaneSum(visible, [&](int64_t j) { return a[j] * d[j]; }));
            for (int j = 0; j < visible; ++j) d[j] = a[j] * (d[j] - dot);
            std::fill(d + visible, d + r1, Real{0});
          }
          // dq[r0:r1] += scale * dscores @ k[0:r1]
          internal::Gemm(CblasNoTrans, CblasNoTrans, rows, hs, r1, scale, dscores.data(), T, k,
                         qkv_stride, Real{1}, dq + int64_t{r0} * qkv_stride, qkv_stride);
          // dk[0:r1] += scale * dscores^T @ q[r0:r1]
          internal::Gemm(CblasTrans, CblasNoTrans, r1, hs, rows, scale, dscores.data(), T,
                         q + int64_t{r0} * qkv_stride, qkv_stride, Real{1}, dk, qkv_stride);
          // dv[0:r1] += att[r0:r1, 0:r1]^T @ dout[r0:r1]
          internal::Gemm(CblasTrans, CblasNoTrans, r1, hs, rows, Real{1}, att_rows, T, dout_rows,
                         out_stride, Real{1}, dv, qkv_stride);
        }
      }
    }
  }
}

template <typename Real>
void AttentionForward(Real* out, Real* att, const Real* qkv, int B, int T, int C, int NH) {
  GroupedAttentionForward(out, att, qkv, AttentionShape{B, T, NH, NH, C / NH}, nullptr);
}

template <typename Real>
void AttentionBackwardInput(Real* dqkv, const Real* dout, const Real* qkv, const Real* att, int B,
                            int T, int C, int NH) {
  GroupedAttentionBackwardInput(dqkv, dout, qkv, att, AttentionShape{B, T, NH, NH, C / NH});
}

#define STAGEHAND_INSTANTIATE_GROUPED_ATTENTION(Real)                                             \
  template void GroupedAttentionForward<Real>(Real*, Real*, const Real*, const AttentionShape&,   \
                                              const int32_t*);                                    \
  template void GroupedAttentionBackwardInput<Real>(Real*, const Real*, const Real*, const Real*, \
                                                    const AttentionShape&);
STAGEHAND_INSTANTIATE_GROUPED_ATTENTION(float)
STAGEHAND_INSTANTIATE_GROUPED_ATTENTION(double)
#undef STAGEHAND_INSTANTIATE_GROUPED_ATTENTION

template void AttentionForward<float>(float*, float*, const float*, int, int, int, int);
template void AttentionForward<double>(double*, double*, const double*, int, int, int, int);
template void AttentionBackwardInput<float>(float*, const float*, const float*, const float*, int,
                                            int, int, int);
template void AttentionBackwardInput<double>(double*, const double*, const double*, const double*,
                                             int, int, int, int);

}  // namespace stagehand::ops
