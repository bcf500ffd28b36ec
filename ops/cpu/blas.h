// Row-major GEMM for the CPU ops through OpenBLAS (cblas_sgemm / cblas_dgemm), overloaded on
// Real, plus a tiled form that is parallel and still bitwise independent of the number of
// threads. Internal to ops/cpu; not a general-purpose wrapper.
#ifndef STAGEHAND_OPS_CPU_BLAS_H_
#define STAGEHAND_OPS_CPU_BLAS_H_

#include <cblas.h>

#include <algorithm>
#include <cstdint>

#include "ops/cpu/parallel.h"

namespace stagehand::ops::internal {

// c (m, n) = alpha * op(a) (m, k) @ op(b) (k, n) + beta * c, all row-major with leading
// dimensions lda, ldb, ldc (so strided views into packed tensors need no copies). Single
// threaded: OpenBLAS is kept at one thread by the callers (KeepBlasSingleThreaded).
inline void Gemm(CBLAS_TRANSPOSE transpose_a, CBLAS_TRANSPOSE transpose_b, int m, int n, int k,
                 float alpha, const float* a, int lda, const float* b, int ldb, float beta,
                 float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, transpose_a, transpose_b, m, n, k, alpha, a, lda, b, ldb, beta, c,
              ldc);
}

inline void Gemm(CBLAS_TRANSPOSE transpose_a, CBLAS_TRANSPOSE transpose_b, int m, int n, int k,
                 double alpha, const double* a, int lda, const double* b, int ldb, double beta,
                 double* c, int ldc) {
  cblas_dgemm(CblasRowMajor, transpose_a, transpose_b, m, n, k, alpha, a, lda, b, ldb, beta, c,
              ldc);
}

// OpenBLAS (0.3.21 measured) splits one GEMM among its own threads in a way that changes the
// rounding: 1, 2 and 3 threads give different bits. So the ops keep OpenBLAS single-threaded
// and parallelise with OpenMP over work whose split depends only on the shapes. This sets
// OpenBLAS's process-wide thread count to 1 if it is not already; call it outside parallel
// regions. Any other OpenBLAS user in the process becomes single-threaded too.
inline void KeepBlasSingleThreaded() {
  if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
}

// How TiledGemm cuts an (m, n) output among threads: along one dimension only, into `count`
// strips of `size` (the last one shorter). A function of m and n alone, never of the number
// of threads, so every element is computed by the same single-threaded BLAS call over the
// whole k whatever the thread count: results are bitwise independent of it.
struct GemmStrips {
  bool by_rows = true;  // strips of rows (else of columns)
  int size = 0;
  int count = 1;
};

// Each strip is one cblas call, which packs its slice of op(a) and op(b) again, so strips are
// long: the longer side is cut into strips of about kStripTarget, the shorter side is kept
// whole (OpenBLAS then packs the big operand once and repacks only the small one per strip).
// The strip count is made even before the size is rounded up to a multiple of 16 (the AVX2
// kernel's tile width), so two threads mostly get equal shares. Small problems stay one strip on
// the calling thread.
inline GemmStrips ChooseGemmStrips(int m, int n, int k) {
  constexpr int kStripTarget = 512;
  constexpr int kAlign = 16;
  GemmStrips strips;
  strips.by_rows = m >= n;
  const int length = strips.by_rows ? m : n;
  strips.size = length;
  if (int64_t{m} * n * k < kMinParallelWork || length < 2 * kAlign) return strips;
  int count = std::max(2, (length + kStripTarget / 2) / kStripTarget);
  count += count % 2;
  strips.size = (length + count - 1) / count;
  strips.size = (strips.size + kAlign - 1) / kAlign * kAlign;
  strips.count = (length + strips.size - 1) / strips.size;
  return strips;
}

// Gemm on the OpenMP threads, bitwise the same for any number of them: the output is cut into
// the strips ChooseGemmStrips picks from the shape, and OpenMP threads take strips in any
// order, each one single-threaded BLAS call over the whole k.
template <typename Real>
void TiledGemm(CBLAS_TRANSPOSE transpose_a, CBLAS_TRANSPOSE transpose_b, int m, int n, int k,
               Real alpha, const Real* a, int lda, const Real* b, int ldb, Real beta, Real* c,
               int ldc) {
  KeepBlasSingleThreaded();
  const GemmStrips strips = ChooseGemmStrips(m, n, k);
  const int length = strips.by_rows ? m : n;
#pragma omp parallel for schedule(dynamic) if (strips.count > 1)
  for (int strip = 0; strip < strips.count; ++strip) {
    const int start = strip * strips.size;
    const int extent = std::min(strips.size, length - start);
    if (strips.by_rows) {  // op(a) rows [start, start + extent)
      const Real* a_strip =
          transpose_a == CblasNoTrans ? a + static_cast<int64_t>(start) * lda : a + start;
      Gemm(transpose_a, transpose_b, extent, n, k, alpha, a_strip, lda, b, ldb, beta,
           c + static_cast<int64_t>(start) * ldc, ldc);
    } else {  // op(b) columns [start, start + extent)
      const Real* b_strip =
          transpose_b == CblasNoTrans ? b + start : b + static_cast<int64_t>(start) * ldb;
      Gemm(transpose_a, transpose_b, m, extent, k, alpha, a, lda, b_strip, ldb, beta, c + start,
           ldc);
    }
  }
}

}  // namespace stagehand::ops::internal

#endif  // STAGEHAND_OPS_CPU_BLAS_H_
