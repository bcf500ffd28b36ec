// Linear layer on the CPU: three row-major GEMMs through blas.h (OpenBLAS, cut into strips
// over OpenMP threads, results independent of the thread count), plus the bias row sums. Not a GEMM
// itself.
#include "ops/cpu/linear.h"

#include <algorithm>
#include <cstdint>

#include "ops/cpu/blas.h"
#include "ops/cpu/parallel.h"

namespace stagehand::ops {
namespace {

// Letters: N rows (B*T), C input channels, OC output channels.
// dbias gives each task a block of output channels, so every element is summed by one thread,
// in row order, whatever the number of threads.
constexpr int kOutputBlock = 256;

}  // namespace

template <typename Real>
void LinearForward(Real* out, const Real* inp, const Real* weight, const Real* bias, int N, int C,
                   int OC) {
  Real beta = 0;
  if (bias != nullptr) {
    const int64_t work = int64_t{N} * OC;
#pragma omp parallel for schedule(static) if (work >= internal::kMinParallelWork)
    for (int n = 0; n < N; ++n) std::copy(bias, bias + OC, out + static_cast<int64_t>(n) * OC);
    beta = 1;
  }
  // out (N, OC) = inp (N, C) @ weight^T (C, OC) + beta * out
  internal::TiledGemm(CblasNoTrans, CblasTrans, N, OC, C, Real{1}, inp, C, weight, C, beta, out,
                      OC);
}

template <typename Real>
void LinearBackwardInput(Real* dinp, const Real* dout, const Real* weight, int N, int C, int OC) {
  // dinp (N, C) += dout (N, OC) @ weight (OC, C)
  internal::TiledGemm(CblasNoTrans, CblasNoTrans, N, C, OC, Real{1}, dout, OC, weight, C, Real{1},
                      dinp, C);
}

template <typename Real>
void LinearBackwardWeights(Real* dweight, Real* dbias, const Real* dout, const Real* inp, int N,
                           int C, int OC) {
  // dweight (OC, C) += dout^T (OC, N) @ inp (N, C)
  internal::TiledGemm(CblasTrans, CblasNoTrans, OC, C, N, Real{1}, dout, OC, inp, C, Real{1},
                      dweight, C);
  if (dbias == nullptr) return;
  const int num_blocks = (OC + kOutputBlock - 1) / kOutputBlock;
  const int64_t work = int64_t{N} * OC;
#pragma omp parallel for schedule(static) if (work >= internal::kMinParallelWork)
  for (int block = 0; block < num_blocks; ++block) {
    const int o_begin = block * kOutputBlock;
    const int width = std::min(OC, o_begin + kOutputBlock) - o_begin;
    double sum[kOutputBlock] = {};
    for (int n = 0; n < N; ++n) {
      const Real* dout_row = dout + static_cast<int64_t>(n) * OC + o_begin;  // (width)
      for (int o = 0; o < width; ++o) sum[o] += static_cast<double>(dout_row[o]);
    }
    for (int o = 0; o < width; ++o) dbias[o_begin + o] += static_cast<Real>(sum[o]);
  }
}

template <typename Real>
void LinearBackward(Real* dinp, Real* dweight, Real* dbias, const Real* dout, const Real* inp,
                    const Real* weight, int N, int C, int OC) {
  LinearBackwardInput(dinp, dout, weight, N, C, OC);
  LinearBackwardWeights(dweight, dbias, dout, inp, N, C, OC);
}

#define STAGEHAND_INSTANTIATE_LINEAR(Real)                                                        \
  template void LinearForward<Real>(Real*, const Real*, const Real*, const Real*, int, int, int); \
  template void LinearBackwardInput<Real>(Real*, const Real*, const Real*, int, int, int);        \
  template void LinearBackwardWeights<Real>(Real*, Real*, const Real*, const Real*, int, int,     \
                                            int);                                                 \
  template void LinearBackward<Real>(Real*, Real*, Real*, const Real*, const Real*, const Real*,  \
                                     int, int, int);
STAGEHAND_INSTANTIATE_LINEAR(float)
STAGEHAND_INSTANTIATE_LINEAR(double)
#undef STAGEHAND_INSTANTIATE_LINEAR

}  // namespace stagehand::ops
