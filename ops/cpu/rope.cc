// RoPE on the CPU: the angles of a row are computed in double once per row and shared by its
// heads; rows in parallel (results do not depend on threads).
#include "ops/cpu/rope.h"

#include <cmath>
#include <vector>

#include "ops/cpu/parallel.h"

namespace stagehand::ops {
namespace {

template <typename Real>
void Rotate(Real* x, const int32_t* positions, const RopeShape& s, double sign) {
  const int half = s.hs / 2;
  std::vector<double> inv_freq(half);
  for (int i = 0; i < half; ++i) inv_freq[i] = std::pow(s.base, -2.0 * i / s.hs);
  const int64_t work = s.N * s.num_heads * s.hs;
#pragma omp parallel if (work >= internal::kMinParallelWork)
  {
    std::vector<Real> cos_row(half), sin_row(half);
#pragma omp for schedule(static)
    for (int64_t n = 0; n < s.N; ++n) {
      for (int i = 0; i < half; ++i) {
        const double angle = static_cast<double>(positions[n]) * inv_freq[i];
        cos_row[i] = static_cast<Real>(std::cos(angle));
        sin_row[i] = static_cast<Real>(sign * std::sin(angle));
      }
      Real* row = x + n * s.stride + s.offset;
      for (int h = 0; h < s.num_heads; ++h) {
        Real* head = row + int64_t{h} * s.hs;
        for (int i = 0; i < half; ++i) {
          const Real a = head[i], b = head[i + half];
          head[i] = a * cos_row[i] - b * sin_row[i];
          head[i + half] = b * cos_row[i] + a * sin_row[i];
        }
      }
    }
  }
}

}  // namespace

template <typename Real>
void RopeForward(Real* x, const int32_t* positions, const RopeShape& shape) {
  Rotate(x, positions, shape, +1.0);
}

template <typename Real>
void RopeBackwardInput(Real* dx, const int32_t* positions, const RopeShape& shape) {
  Rotate(dx, positions, shape, -1.0);
}

template void RopeForward<float>(float*, const int32_t*, const RopeShape&);
template void RopeForward<double>(double*, const int32_t*, const RopeShape&);
template void RopeBackwardInput<float>(float*, const int32_t*, const RopeShape&);
template void RopeBackwardInput<double>(double*, const int32_t*, const RopeShape&);

}  // namespace stagehand::ops
