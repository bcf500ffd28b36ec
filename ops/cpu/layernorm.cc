// LayerNorm on the CPU (llm.c's layernorm_forward / layernorm_backward), I and W split.
// Not fused with the residual add; row statistics are accumulated in double, stored as Real.
#include "ops/cpu/layernorm.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "ops/cpu/lane_sum.h"
#include "ops/cpu/parallel.h"

namespace stagehand::ops {
namespace {

// Letters: N rows (B*T), C channels. xhat = (inp - mean) * rstd.
constexpr double kEpsilon = 1e-5;

// The W call gives each task a block of channels, so every element of dweight and dbias is
// summed by one thread, in row order, whatever the number of threads.
constexpr int kChannelBlock = 64;

}  // namespace

template <typename Real>
void LayerNormForward(Real* out, Real* mean, Real* rstd, const Real* inp, const Real* weight,
                      const Real* bias, int N, int C) {
  const int64_t work = int64_t{N} * C;
#pragma omp parallel for schedule(static) if (work >= internal::kMinParallelWork)
  for (int n = 0; n < N; ++n) {
    const Real* x = inp + static_cast<int64_t>(n) * C;  // (C)
    Real* y = out + static_cast<int64_t>(n) * C;        // (C)
    const double m = internal::LaneSum(C, [&](int64_t c) { return x[c]; }) / C;
    const auto squared_deviation = [&](int64_t c) {
      const double deviation = x[c] - m;
      return deviation * deviation;
    };
    const double variance = internal::LaneSum(C, squared_deviation) / C;
    // The output uses the stored (rounded) statistics, so the backward sees the same ones.
    const Real row_mean = static_cast<Real>(m);
    const Real row_rstd = static_cast<Real>(1.0 / std::sqrt(variance + kEpsilon));
    for (int c = 0; c < C; ++c) y[c] = (x[c] - row_mean) * row_rstd * weight[c] + bias[c];
    mean[n] = row_mean;
    rstd[n] = row_rstd;
  }
}

template <typename Real>
void LayerNormBackwardInput(Real* dinp, const Real* dout, const Real* inp, const Real* weight,
                            const Real* mean, const Real* rstd, int N, int C) {
  const int64_t work = int64_t{N} * C;
#pragma omp parallel for schedule(static) if (work >= internal::kMinParallelWork)
  for (int n = 0; n < N; ++n) {
    const int64_t offset = static_cast<int64_t>(n) * C;
    const Real* x = inp + offset;    // (C)
    const Real* dy = dout + offset;  // (C)
    Real* dx = dinp + offset;        // (C)
    const Real row_mean = mean[n];
    const Real row_rstd = rstd[n];
    // dxhat = weight * dout; dinp = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)).
    const auto dxhat = [&](int64_t c) { return weight[c] * dy[c]; };
    const auto dxhat_xhat = [&](int64_t c) { return dxhat(c) * ((x[c] - row_mean) * row_rstd); };
    const Real dxhat_mean = static_cast<Real>(internal::LaneSum(C, dxhat) / C);
    const Real dxhat_xhat_mean = static_cast<Real>(internal::LaneSum(C, dxhat_xhat) / C);
    for (int c = 0; c < C; ++c) {
      const Real xhat = (x[c] - row_mean) * row_rstd;
      dx[c] += row_rstd * (dxhat(c) - dxhat_mean - xhat * dxhat_xhat_mean);
    }
  }
}

template <typename Real>
void LayerNormBackwardWeights(Real* dweight, Real* dbias, const Real* dout, const Real* inp,
                              const Real* mean, const Real* rstd, int N, int C) {
  const int num_blocks = (C + kChannelBlock - 1) / kChannelBlock;
  const int64_t work = int64_t{N} * C;
#pragma omp parallel for schedule(static) if (work >= internal::kMinParallelWork)
  for (int block = 0; block < num_blocks; ++block) {
    const int c_begin = block * kChannelBlock;
    const int width = std::min(C, c_begin + kChannelBlock) - c_begin;
    double dweight_sum[kChannelBlock] = {};
    double dbias_sum[kChannelBlock] = {};
    for (int n = 0; n < N; ++n) {
      const int64_t offset = static_cast<int64_t>(n) * C + c_begin;
      const Real* x = inp + offset;    // (width)
      const Real* dy = dout + offset;  // (width)
      const Real row_mean = mean[n];
      const Real row_rstd = rstd[n];
      for (int c = 0; c < width; ++c) {
        const Real xhat = (x[c] - row_mean) * row_rstd;
        dweight_sum[c] += static_cast<double>(dy[c] * xhat);
        dbias_sum[c] += static_cast<double>(dy[c]);
      }
    }
    for (int c = 0; c < width; ++c) {
      dweight[c_begin + c] += static_cast<Real>(dweight_sum[c]);
      dbias[c_begin + c] += static_cast<Real>(dbias_sum[c]);
    }
  }
}

template <typename Real>
void LayerNormBackward(Real* dinp, Real* dweight, Real* dbias, const Real* dout, const Real* inp,
                       const Real* weight, const Real* mean, const Real* rstd, int N, int C) {
  LayerNormBackwardInput(dinp, dout, inp, weight, mean, rstd, N, C);
  LayerNormBackwardWeights(dweight, dbias, dout, inp, mean, rstd, N, C);
}

#define STAGEHAND_INSTANTIATE_LAYERNORM(Real)                                                      \
  template void LayerNormForward<Real>(Real*, Real*, Real*, const Real*, const Real*, const Real*, \
                                       int, int);                                                  \
  template void LayerNormBackwardInput<Real>(Real*, const Real*, const Real*, const Real*,         \
                                             const Real*, const Real*, int, int);                  \
  template void LayerNormBackwardWeights<Real>(Real*, Real*, const Real*, const Real*,             \
                                               const Real*, const Real*, int, int);                \
  template void LayerNormBackward<Real>(Real*, Real*, Real*, const Real*, const Real*,             \
                                        const Real*, const Real*, const Real*, int, int);
STAGEHAND_INSTANTIATE_LAYERNORM(float)
STAGEHAND_INSTANTIATE_LAYERNORM(double)
#undef STAGEHAND_INSTANTIATE_LAYERNORM

}  // namespace stagehand::ops
