// Float GEMM on AVX-512: each thread packs one 48-column panel of op(b) at a time and an 8 x 48
// kernel, 24 accumulators in zmm registers, reads op(a) in place. Not tuned beyond the shapes
// of GPT-2 training (k and n in the hundreds to tens of thousands); no AVX2 path (blas.h falls
// back to OpenBLAS).
#include "ops/cpu/sgemm.h"

#if defined(__AVX512F__)

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>

namespace stagehand::ops::internal {
namespace {

// Letters: c (m, n) = op(a) (m, k) @ op(b) (k, n). A B panel is kc by kNr columns of op(b),
// stored k-major (for each p, the kNr values of row p); an A panel (only the zero-padded last
// rows are packed) is kMr rows by kc, k-major too. k runs in blocks of kKc; the k blocks of
// every element are summed in order, the first with beta, so a result depends on k only.
constexpr int kMr = 8;     // rows per kernel call: 8 broadcasts per k
constexpr int kNr = 48;    // columns per kernel call: 3 zmm vectors
constexpr int kKc = 256;   // k per block: one B panel is 48 KiB
constexpr int kMc = 1024;  // rows per work item (a B panel is packed once per item)
constexpr int64_t kMinParallelFlops = int64_t{1} << 21;  // below this, one thread

// A float buffer aligned to 64 bytes that only grows; one per thread per use.
class AlignedBuffer {
 public:
  ~AlignedBuffer() { std::free(data_); }
  float* Get(int64_t size) {
    if (size > capacity_) {
      std::free(data_);
      const size_t bytes = (static_cast<size_t>(size) * sizeof(float) + 63) / 64 * 64;
      data_ = static_cast<float*>(std::aligned_alloc(64, bytes));
      capacity_ = size;
    }
    return data_;
  }

 private:
  float* data_ = nullptr;
  int64_t capacity_ = 0;
};

// The low `count` lanes of 16.
__mmask16 FirstLanes(int count) {
  return count >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << std::max(count, 0)) - 1);
}

// Transposes the 16 x 16 block in r: on return r[c] holds what was column c.
void Transpose16x16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // In each 128-bit lane L of r[4 g + q]: rows 4g..4g+3 of column 4 L + q.
  for (int g = 0; g < 4; ++g) {
    r[4 * g] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int q = 0; q < 4; ++q) {
    const __m512 low01 = _mm512_shuffle_f32x4(r[q], r[4 + q], _MM_SHUFFLE(1, 0, 1, 0));
    const __m512 high01 = _mm512_shuffle_f32x4(r[q], r[4 + q], _MM_SHUFFLE(3, 2, 3, 2));
    const __m512 low23 = _mm512_shuffle_f32x4(r[8 + q], r[12 + q], _MM_SHUFFLE(1, 0, 1, 0));
    const __m512 high23 = _mm512_shuffle_f32x4(r[8 + q], r[12 + q], _MM_SHUFFLE(3, 2, 3, 2));
    t[q] = _mm512_shuffle_f32x4(low01, low23, _MM_SHUFFLE(2, 0, 2, 0));
    t[4 + q] = _mm512_shuffle_f32x4(low01, low23, _MM_SHUFFLE(3, 1, 3, 1));
    t[8 + q] = _mm512_shuffle_f32x4(high01, high23, _MM_SHUFFLE(2, 0, 2, 0));
    t[12 + q] = _mm512_shuffle_f32x4(high01, high23, _MM_SHUFFLE(3, 1, 3, 1));
  }
  for (int c = 0; c < 16; ++c) r[c] = t[c];
}

// dst[p * dst_stride + j] = src[j * src_stride + p] for j < rows (zero for rows <= j < 16)
// and p < kc: `rows` rows of src read along p, written as k-major 16-wide groups.
void TransposeRows(const float* src, int64_t src_stride, int rows, int kc, float* dst,
                   int dst_stride) {
  for (int p = 0; p < kc; p += 16) {
    const __mmask16 along_p = FirstLanes(kc - p);
    __m512 r[16];
    for (int j = 0; j < 16; ++j) {
      r[j] = j < rows ? _mm512_maskz_loadu_ps(along_p, src + j * src_stride + p)
                      : _mm512_setzero_ps();
    }
    Transpose16x16(r);
    const int columns = std::min(16, kc - p);
    for (int c = 0; c < columns; ++c) _mm512_store_ps(dst + (p + c) * dst_stride, r[c]);
  }
}

// The operand views: element (i, p) of op(a) and (p, j) of op(b).
struct Operands {
  bool transpose_a, transpose_b;
  const float* a;
  int lda;
  const float* b;
  int ldb;
};

// Packs rows [i0, i0 + rows) x columns [p0, p0 + kc) of op(a) into panel (kc, kMr); rows past
// `rows` are zero.
void PackA(const Operands& o, int i0, int rows, int p0, int kc, float* panel) {
  if (o.transpose_a) {  // op(a)(i, p) = a[p * lda + i]: kMr contiguous values per p
    const __mmask16 along_i = FirstLanes(rows);
    for (int p = 0; p < kc; ++p) {
      const float* src = o.a + static_cast<int64_t>(p0 + p) * o.lda + i0;
      _mm256_store_ps(panel + p * kMr,
                      _mm512_castps512_ps256(_mm512_maskz_loadu_ps(along_i, src)));
    }
    return;
  }
  // op(a)(i, p) = a[i * lda + p]: kMr rows read along p, transposed 16 p at a time.
  const float* src = o.a + static_cast<int64_t>(i0) * o.lda + p0;
  for (int p = 0; p < kc; p += 16) {
    const __mmask16 along_p = FirstLanes(kc - p);
    __m512 r[16];
    for (int i = 0; i < 16; ++i) {
      r[i] = i < rows && i < kMr ? _mm512_maskz_loadu_ps(along_p, src + i * int64_t{o.lda} + p)
                                 : _mm512_setzero_ps();
    }
    Transpose16x16(r);
    const int columns = std::min(16, kc - p);
    for (int c = 0; c < columns; ++c) {
      _mm256_store_ps(panel + (p + c) * kMr, _mm512_castps512_ps256(r[c]));
    }
  }
}

// Packs rows [p0, p0 + kc) x columns [j0, j0 + cols) of op(b) into panel (kc, kNr); columns
// past `cols` are zero.
void PackB(const Operands& o, int p0, int kc, int j0, int cols, float* panel) {
  if (!o.transpose_b) {  // op(b)(p, j) = b[p * ldb + j]: kNr contiguous values per p
    const __mmask16 masks[3] = {FirstLanes(cols), FirstLanes(cols - 16), FirstLanes(cols - 32)};
    for (int p = 0; p < kc; ++p) {
      const float* src = o.b + static_cast<int64_t>(p0 + p) * o.ldb + j0;
      float* dst = panel + p * kNr;
      for (int v = 0; v < 3; ++v) {
        _mm512_store_ps(dst + 16 * v, _mm512_maskz_loadu_ps(masks[v], src + 16 * v));
      }
    }
    return;
  }
  // op(b)(p, j) = b[j * ldb + p]: kNr rows of b read along p, 16 rows at a time.
  for (int g = 0; g < kNr / 16; ++g) {
    const int rows = std::min(std::max(cols - 16 * g, 0), 16);
    TransposeRows(o.b + static_cast<int64_t>(j0 + 16 * g) * o.ldb + p0, o.ldb, rows, kc,
                  panel + 16 * g, kNr);
  }
}

// A view of kMr rows of op(a) from row i, k from p: element (r, q) is at
// a[r * row_stride + q * k_stride]; one of the strides is 1. Untransposed a is read in place
// (k_stride 1), transposed a too (row_stride 1); a packed panel is (row_stride 1, k_stride kMr).
struct AView {
  const float* a;
  int64_t row_stride, k_stride;
};

// c[0:rows, 0:cols] (row stride ldc) = alpha * op(a)[0:kMr, 0:kc] @ b_panel
// + (first ? beta * c : c). The 24 accumulators sum over p = 0..kc-1 in order; the update is
// one fused multiply-add per element, the same instructions for every element whatever rows,
// cols and the layout of a are. kRowsAlongK: a's rows run along k (k_stride 1).
template <bool kRowsAlongK>
void Kernel(int kc, const AView& a, const float* b_panel, float* c, int64_t ldc, int rows,
            int cols, float alpha, float beta, bool first) {
  __m512 acc[kMr][3];
  for (int i = 0; i < kMr; ++i) {
    for (int v = 0; v < 3; ++v) acc[i][v] = _mm512_setzero_ps();
  }
  for (int p = 0; p < kc; ++p) {
    const float* bp = b_panel + p * kNr;
    const __m512 b0 = _mm512_load_ps(bp);
    const __m512 b1 = _mm512_load_ps(bp + 16);
    const __m512 b2 = _mm512_load_ps(bp + 32);
#pragma GCC unroll 8
    for (int i = 0; i < kMr; ++i) {
      const float value = kRowsAlongK ? a.a[i * a.row_stride + p] : a.a[p * a.k_stride + i];
      const __m512 ai = _mm512_set1_ps(value);
      acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
      acc[i][2] = _mm512_fmadd_ps(ai, b2, acc[i][2]);
    }
  }
  const __m512 alpha_v = _mm512_set1_ps(alpha);
  const __m512 beta_v = _mm512_set1_ps(beta);
  const __mmask16 masks[3] = {FirstLanes(cols), FirstLanes(cols - 16), FirstLanes(cols - 32)};
  const bool read_c = !first || beta != 0.f;
  for (int i = 0; i < rows; ++i) {
    float* row = c + i * ldc;
    for (int v = 0; v < 3; ++v) {
      if (masks[v] == 0) continue;
      __m512 old = _mm512_setzero_ps();
      if (read_c) {
        old = _mm512_maskz_loadu_ps(masks[v], row + 16 * v);
        if (first) old = _mm512_mul_ps(beta_v, old);
      }
      _mm512_mask_storeu_ps(row + 16 * v, masks[v], _mm512_fmadd_ps(acc[i][v], alpha_v, old));
    }
  }
}

}  // namespace

void Sgemm(bool transpose_a, bool transpose_b, int m, int n, int k, float alpha, const float* a,
           int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {  // c = beta * c
    for (int i = 0; i < m; ++i) {
      float* row = c + static_cast<int64_t>(i) * ldc;
      for (int j = 0; j < n; ++j) row[j] = beta == 0.f ? 0.f : beta * row[j];
    }
    return;
  }
  const Operands o{transpose_a, transpose_b, a, lda, b, ldb};
  // Work items: (block of kMc rows, B panel), taken dynamically. An item packs its B panel per
  // k block into the thread's buffer and reads a in place, so threads share nothing and meet
  // only at the end of the call (a descheduled thread never stalls the other mid-GEMM).
  const int b_panels = (n + kNr - 1) / kNr;
  const int row_blocks = (m + kMc - 1) / kMc;
  const int items = b_panels * row_blocks;
  const bool parallel = !omp_in_parallel() && items > 1 &&
                        2.0 * m * n * k >= static_cast<double>(kMinParallelFlops);
#pragma omp parallel if (parallel)
  {
    static thread_local AlignedBuffer b_buffer, edge_buffer;
    float* b_panel = b_buffer.Get(int64_t{kKc} * kNr);
    float* edge_panel = edge_buffer.Get(int64_t{kKc} * kMr);
#pragma omp for schedule(dynamic)
    for (int item = 0; item < items; ++item) {
      const int i_begin = item / b_panels * kMc;
      const int i_end = std::min(m, i_begin + kMc);
      const int j = item % b_panels * kNr;
      const int cols = std::min(kNr, n - j);
      for (int p0 = 0; p0 < k; p0 += kKc) {
        const int kc = std::min(kKc, k - p0);
        PackB(o, p0, kc, j, cols, b_panel);
        for (int i = i_begin; i < i_end; i += kMr) {
          const int rows = std::min(kMr, m - i);
          float* c_tile = c + static_cast<int64_t>(i) * ldc + j;
          if (rows < kMr) {  // the last rows, zero-padded to a full panel
            PackA(o, i, rows, p0, kc, edge_panel);
            Kernel<false>(kc, AView{edge_panel, 1, kMr}, b_panel, c_tile, ldc, rows, cols, alpha,
                          beta, p0 == 0);
          } else if (transpose_a) {  // op(a)(i, p) = a[p * lda + i]
            Kernel<false>(kc, AView{a + static_cast<int64_t>(p0) * lda + i, 1, lda}, b_panel,
                          c_tile, ldc, rows, cols, alpha, beta, p0 == 0);
          } else {  // op(a)(i, p) = a[i * lda + p]
            Kernel<true>(kc, AView{a + static_cast<int64_t>(i) * lda + p0, lda, 1}, b_panel,
                         c_tile, ldc, rows, cols, alpha, beta, p0 == 0);
          }
        }
      }
    }
  }
}

}  // namespace stagehand::ops::internal

#endif  // defined(__AVX512F__)
