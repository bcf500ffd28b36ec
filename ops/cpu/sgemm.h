// Our float GEMM for AVX-512 CPUs: packed panels and an 8 x 48 register-blocked kernel, run
// on the OpenMP threads with a split that never changes a result and no barrier but the last. Internal to ops/cpu (blas.h
// routes float GEMMs here when the build targets AVX-512); not a BLAS: float, row-major, and
// only what the ops need. Why: the OpenBLAS we link is pinned to its Haswell (AVX2) kernels
// by OPENBLAS_CORETYPE, half the FMA width these machines have.
#ifndef STAGEHAND_OPS_CPU_SGEMM_H_
#define STAGEHAND_OPS_CPU_SGEMM_H_

namespace stagehand::ops::internal {

// True when this build has the AVX-512 kernel (compiled with AVX-512F enabled).
#if defined(__AVX512F__)
inline constexpr bool kHaveSgemm = true;
#else
inline constexpr bool kHaveSgemm = false;
#endif

// c (m, n) = alpha * op(a) (m, k) @ op(b) (k, n) + beta * c, row-major with leading dimensions
// lda, ldb, ldc; op(x) is x or x^T as transpose_* says; beta = 0 never reads c. Every element
// of c is a sum over k in blocks of a fixed size in a fixed order, so the bits depend only on
// the operands and (m, n, k), never on the number of threads: called outside a parallel region
// it uses the OpenMP threads, inside one it runs on the calling thread, with the same result.
// Only when kHaveSgemm.
void Sgemm(bool transpose_a, bool transpose_b, int m, int n, int k, float alpha, const float* a,
           int lda, const float* b, int ldb, float beta, float* c, int ldc);

}  // namespace stagehand::ops::internal

#endif  // STAGEHAND_OPS_CPU_SGEMM_H_
