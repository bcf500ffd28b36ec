// Row-major GEMM for the CPU ops, overloaded on Real, plus a tiled form that is parallel and
// still bitwise independent of the number of threads. Float goes to our AVX-512 Sgemm where the
// build has it (sgemm.h), else to cblas_sgemm; double always to cblas_dgemm. Internal to
// ops/cpu; not a general-purpose wrapper.
#ifndef STAGEHAND_OPS_CPU_BLAS_H_
#define STAGEHAND_OPS_CPU_BLAS_H_

#include <cblas.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "ops/cpu/parallel.h"
#include "ops/cpu/sgemm.h"

namespace stagehand::ops::internal {

// c (m, n) = alpha * op(a) (m, k) @ op(b) (k, n) + beta * c, all row-major with leading
// dimensions lda, ldb, ldc (so strided views into packed tensors need no copies). Single
// threaded: Sgemm runs on the calling thread inside a parallel region, and OpenBLAS is kept at
// one thread by the callers (KeepBlasSingleThreaded).
inline void Gemm(CBLAS_TRANSPOSE transpose_a, CBLAS_TRANSPOSE transpose_b, int m, int n, int k,
                 float alpha, const float* a, int lda, const float* b, int ldb, float beta,
                 float* c, int ldc) {
  if constexpr (kHaveSgemm) {
    Sgemm(transpose_a == CblasTrans, transpose_b == CblasTrans, m, n, k, alpha, a, lda, b, ldb,
          beta, c, ldc);
    return;
  }
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

// Gemm on the OpenMP threads, bitwise the same for any number of them. Float with Sgemm: one
// call, which splits its own work that way. Otherwise output tiles of kTileRows x tile_cols
// that OpenMP threads take in any order. Each tile is one single-threaded BLAS call over the
// whole k, so every element is computed the same way whatever the number of threads. The tile
// grid depends only on m and n: 128 x 256 tiles, or 128 x 128 when that would leave fewer than
// kMinTiles to share out.
template <typename Real>
void TiledGemm(CBLAS_TRANSPOSE transpose_a, CBLAS_TRANSPOSE transpose_b, int m, int n, int k,
               Real alpha, const Real* a, int lda, const Real* b, int ldb, Real beta, Real* c,
               int ldc) {
  if constexpr (kHaveSgemm && std::is_same_v<Real, float>) {
    Sgemm(transpose_a == CblasTrans, transpose_b == CblasTrans, m, n, k, alpha, a, lda, b, ldb,
          beta, c, ldc);
    return;
  }
  constexpr int kTileRows = 128;
  constexpr int kMinTiles = 32;
  KeepBlasSingleThreaded();
  const int row_tiles = (m + kTileRows - 1) / kTileRows;
  int tile_cols = 256;
  if (static_cast<int64_t>(row_tiles) * ((n + tile_cols - 1) / tile_cols) < kMinTiles) {
    tile_cols = 128;
  }
  const int col_tiles = (n + tile_cols - 1) / tile_cols;
  const int64_t work = int64_t{m} * n * k;
#pragma omp parallel for schedule(dynamic) collapse(2) if (work >= kMinParallelWork)
  for (int row_tile = 0; row_tile < row_tiles; ++row_tile) {
    for (int col_tile = 0; col_tile < col_tiles; ++col_tile) {
      const int row = row_tile * kTileRows;
      const int col = col_tile * tile_cols;
      const int rows = std::min(kTileRows, m - row);
      const int cols = std::min(tile_cols, n - col);
      // op(a) rows [row, row + rows) and op(b) columns [col, col + cols).
      const Real* a_tile =
          transpose_a == CblasNoTrans ? a + static_cast<int64_t>(row) * lda : a + row;
      const Real* b_tile =
          transpose_b == CblasNoTrans ? b + col : b + static_cast<int64_t>(col) * ldb;
      Gemm(transpose_a, transpose_b, rows, cols, k, alpha, a_tile, lda, b_tile, ldb, beta,
           c + static_cast<int64_t>(row) * ldc + col, ldc);
    }
  }
}

}  // namespace stagehand::ops::internal

#endif  // STAGEHAND_OPS_CPU_BLAS_H_
