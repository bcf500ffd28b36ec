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

// row (length) holds scaled scores; softmax over the first `visible` entries, zero the rest.
template <typename Real>
void CausalSoftmaxRow(Real* row, int visible, int length) {
  const Real max_score = internal::MaxOf(row, visible);
  for (int i = 0; i < visible; ++i) row[i] = internal::Exp(row[i] - max_score);
  const double sum = internal::LaneSum(visible, [&](int64_t i) { return row[i]; });
  const Real inverse_sum = static_cast<Real>(1.0 / sum);
  for (int i = 0; i < visible; ++i) row[i] *= inverse_sum;
  std::fill(row + visible, row + length, Real{0});
}

}  // namespace

template <typename Real>
void AttentionForward(Real* out, Real* att, const Real* qkv, int B, int T, int C, int NH) {
  const int hs = C / NH;
  const int qkv_stride = 3 * C;
  const Real scale = static_cast<Real>(1.0 / std::sqrt(static_cast<double>(hs)));
  internal::KeepBlasSingleThreaded();  // the threads are ours, one (b, h) each
  const int64_t work = int64_t{B} * NH * T * T * hs;
#pragma omp parallel for schedule(static) if (work >= internal::kMinParallelWork)
  for (int bh = 0; bh < B * NH; ++bh) {
    const int b = bh / NH;
    const int h = bh % NH;
    const Real* q = qkv + static_cast<int64_t>(b) * T * qkv_stride + h * hs;  // (T, hs)
    const Real* k = q + C;                                                    // (T, hs)
    const Real* v = q + 2 * C;                                                // (T, hs)
    Real* out_bh = out + static_cast<int64_t>(b) * T * C + h * hs;            // (T, hs)
    Real* att_bh = att + static_cast<int64_t>(bh) * T * T;                    // (T, T)
    for (int r0 = 0; r0 < T; r0 += kRowBlock) {
      const int r1 = std::min(T, r0 + kRowBlock);
      const int rows = r1 - r0;
      Real* att_rows = att_bh + static_cast<int64_t>(r0) * T;  // (rows, T)
      // att[r0:r1, 0:r1] = scale * q[r0:r1] @ k[0:r1]^T
      internal::Gemm(CblasNoTrans, CblasTrans, rows, r1, hs, scale, q + int64_t{r0} * qkv_stride,
                     qkv_stride, k, qkv_stride, Real{0}, att_rows, T);
      for (int t = r0; t < r1; ++t) CausalSoftmaxRow(att_bh + int64_t{t} * T, t + 1, T);
      // out[r0:r1] = att[r0:r1, 0:r1] @ v[0:r1]
      internal::Gemm(CblasNoTrans, CblasNoTrans, rows, hs, r1, Real{1}, att_rows, T, v, qkv_stride,
                     Real{0}, out_bh + int64_t{r0} * C, C);
    }
  }
}

template <typename Real>
void AttentionBackwardInput(Real* dqkv, const Real* dout, const Real* qkv, const Real* att, int B,
                            int T, int C, int NH) {
  const int hs = C / NH;
  const int qkv_stride = 3 * C;
  const Real scale = static_cast<Real>(1.0 / std::sqrt(static_cast<double>(hs)));
  internal::KeepBlasSingleThreaded();  // the threads are ours, one (b, h) each
  const int64_t work = int64_t{B} * NH * T * T * hs;
#pragma omp parallel if (work >= internal::kMinParallelWork)
  {
    // dscores for one row block: (kRowBlock, T), of which (rows, r1) is used.
    std::vector<Real> dscores(static_cast<size_t>(std::min(T, kRowBlock)) * T);
#pragma omp for schedule(static)
    for (int bh = 0; bh < B * NH; ++bh) {
      const int b = bh / NH;
      const int h = bh % NH;
      const int64_t qkv_offset = static_cast<int64_t>(b) * T * qkv_stride + h * hs;
      const Real* q = qkv + qkv_offset;                                       // (T, hs)
      const Real* k = q + C;                                                  // (T, hs)
      const Real* v = q + 2 * C;                                              // (T, hs)
      Real* dq = dqkv + qkv_offset;                                           // (T, hs)
      Real* dk = dq + C;                                                      // (T, hs)
      Real* dv = dq + 2 * C;                                                  // (T, hs)
      const Real* dout_bh = dout + static_cast<int64_t>(b) * T * C + h * hs;  // (T, hs)
      const Real* att_bh = att + static_cast<int64_t>(bh) * T * T;            // (T, T)
      for (int r0 = 0; r0 < T; r0 += kRowBlock) {
        const int r1 = std::min(T, r0 + kRowBlock);
        const int rows = r1 - r0;
        const Real* att_rows = att_bh + static_cast<int64_t>(r0) * T;    // (rows, T)
        const Real* dout_rows = dout_bh + static_cast<int64_t>(r0) * C;  // (rows, hs)
        // datt (rows, r1) = dout[r0:r1] @ v[0:r1]^T
        internal::Gemm(CblasNoTrans, CblasTrans, rows, r1, hs, Real{1}, dout_rows, C, v, qkv_stride,
                       Real{0}, dscores.data(), T);
        // Softmax backward, row by row: dscore = att * (datt - sum(att * datt)); 0 if masked.
        for (int i = 0; i < rows; ++i) {
          const Real* a = att_rows + static_cast<int64_t>(i) * T;
          Real* d = dscores.data() + static_cast<int64_t>(i) * T;
          const int visible = r0 + i + 1;
          const Real dot =
              static_cast<Real>(internal::LaneSum(visible, [&](int64_t j) { return a[j] * d[j]; }));
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
        internal::Gemm(CblasTrans, CblasNoTrans, r1, hs, rows, Real{1}, att_rows, T, dout_rows, C,
                       Real{1}, dv, qkv_stride);
      }
    }
  }
}

template void AttentionForward<float>(float*, float*, const float*, int, int, int, int);
template void AttentionForward<double>(double*, double*, const double*, int, int, int, int);
template void AttentionBackwardInput<float>(float*, const float*, const float*, const float*, int,
                                            int, int, int);
template void AttentionBackwardInput<double>(double*, const double*, const double*, const double*,
                                             int, int, int, int);

}  // namespace stagehand::ops
