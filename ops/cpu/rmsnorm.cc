// RMSNorm on the CPU, I and W split, in the layout and determinism rules of layernorm.cc:
// row statistics in double (LaneSum), channel blocks for W so each dweight element is summed
// by one thread in row order.
#include "ops/cpu/rmsnorm.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "ops/cpu/lane_sum.h"
#include "ops/cpu/parallel.h"

namespace stagehand::ops {
namespace {

constexpr int kChannelBlock = 64;

}  // namespace

template <typename Real>
void RmsNormForward(Real* out, Real* rstd, const Real* inp, const Real* weight, int N, int C,
                    double eps) {
  const int64_t work = int64_t{N} * C;
#pragma omp parallel for schedule(static) if (work >= internal::kMinParallelWork)
  for (int n = 0; n < N; ++n) {
    const Real* x = inp + static_cast<int64_t>(n) * C;  // (C)
    Real* y = out + static_cast<int64_t>(n) * C;        // (C)
    const auto square = [&](int64_t c) { return static_cast<double>(x[c]) * x[c]; };
    const double mean_square = internal::LaneSum(C, square) / C;
    const Real row_rstd = static_cast<Real>(1.0 / std::sqrt(mean_square + eps));
    for (int c = 0; c < C; ++c) y[c] = x[c] * row_rstd * weight[c];
    rstd[n] = row_rstd;
  }
}

template <typename Real>
void RmsNormBackwardInput(Real* dinp, const Real* dout, const Real* inp, const Real* weight,
                          const Real* rstd, int N, int C) {
  const int64_t work = int64_t{N} * C;
#pragma omp parallel for schedule(static) if (work >= internal::kMinParallelWork)
  for (int n = 0; n < N; ++n) {
    const int64_t offset = static_cast<int64_t>(n) * C;
    const Real* x = inp + offset;    // (C)
    const Real* dy = dout + offset;  // (C)
    Real* dx = dinp + offset;        // (C)
    const Real row_rstd = rstd[n];
    const auto dxhat_xhat = [&](int64_t c) { return weight[c] * dy[c] * (x[c] * row_rstd); };
    const Real mean_dxhat_xhat = static_cast<Real>(internal::LaneSum(C, dxhat_xhat) / C);
    for (int c = 0; c < C; ++c) {
      const Real xhat = x[c] * row_rstd;
      dx[c] += row_rstd * (weight[c] * dy[c] - xhat * mean_dxhat_xhat);
    }
  }
}

template <typename Real>
void RmsNormBackwardWeights(Real* dweight, const Real* dout, const Real* inp, const Real* rstd,
                            int N, int C) {
  const int num_blocks = (C + kChannelBlock - 1) / kChannelBlock;
  const int64_t work = int64_t{N} * C;
#pragma omp parallel for schedule(static) if (work >= internal::kMinParallelWork)
  for (int block = 0; block < num_blocks; ++block) {
    const int c_begin = block * kChannelBlock;
    const int width = std::min(C, c_begin + kChannelBlock) - c_begin;
    double sums[kChannelBlock] = {};
    for (int n = 0; n < N; ++n) {
      const int64_t offset = static_cast<int64_t>(n) * C + c_begin;
      const Real row_rstd = rstd[n];
      for (int c = 0; c < width; ++c) {
        sums[c] += static_cast<double>(dout[offset + c] * (inp[offset + c] * row_rstd));
      }
    }
    for (int c = 0; c < width; ++c) dweight[c_begin + c] += static_cast<Real>(sums[c]);
  }
}

template <typename Real>
void RmsNormBackward(Real* dinp, Real* dweight, const Real* dout, const Real* inp,
                     const Real* weight, const Real* rstd, int N, int C) {
  RmsNormBackwardInput(dinp, dout, inp, weight, rstd, N, C);
  RmsNormBackwardWeights(dweight, dout, inp, rstd, N, C);
}

#define STAGEHAND_INSTANTIATE_RMSNORM(Real)                                                     \
  template void RmsNormForward<Real>(Real*, Real*, const Real*, const Real*, int, int, double); \
  template void RmsNormBackwardInput<Real>(Real*, const Real*, const Real*, const Real*,        \
                                           const Real*, int, int);                              \
  template void RmsNormBackwardWeights<Real>(Real*, const Real*, const Real*, const Real*, int, \
                                             int);                                              \
  template void RmsNormBackward<Real>(Real*, Real*, const Real*, const Real*, const Real*,      \
                                      const Real*, int, int);
STAGEHAND_INSTANTIATE_RMSNORM(float)
STAGEHAND_INSTANTIATE_RMSNORM(double)
#undef STAGEHAND_INSTANTIATE_RMSNORM

}  // namespace stagehand::ops
