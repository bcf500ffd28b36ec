// Deterministic in-row reductions for the CPU ops: sums in double over a fixed set of lanes,
// and a max. Internal to ops/cpu; not a parallel reduction (callers split work by rows).
#ifndef STAGEHAND_OPS_CPU_LANE_SUM_H_
#define STAGEHAND_OPS_CPU_LANE_SUM_H_

#include <cstdint>

namespace stagehand::ops::internal {

// Sum of term(i) for i in [0, n), in double. Eight interleaved partial sums, combined in a
// fixed order: the compiler can vectorise it without -ffast-math, and the result depends only
// on n and the terms (never on threads or on the machine's vector width).
template <typename Term>
inline double LaneSum(int64_t n, Term term) {
  constexpr int kLanes = 8;
  double lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) lanes[j] += static_cast<double>(term(i + j));
  }
  double tail = 0.0;
  for (; i < n; ++i) tail += static_cast<double>(term(i));
  return (((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) +
          ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]))) +
         tail;
}

// Largest of x[0, n); n >= 1. Max is exact, so the lane order cannot change the result.
template <typename Real>
inline Real MaxOf(const Real* x, int64_t n) {
  constexpr int kLanes = 8;
  int64_t i = 0;
  Real best = x[0];
  if (n >= kLanes) {
    Real lanes[kLanes];
    for (int j = 0; j < kLanes; ++j) lanes[j] = x[j];
    for (i = kLanes; i + kLanes <= n; i += kLanes) {
      for (int j = 0; j < kLanes; ++j) lanes[j] = x[i + j] > lanes[j] ? x[i + j] : lanes[j];
    }
    for (int j = 0; j < kLanes; ++j) best = lanes[j] > best ? lanes[j] : best;
  }
  for (; i < n; ++i) best = x[i] > best ? x[i] : best;
  return best;
}

}  // namespace stagehand::ops::internal

#endif  // STAGEHAND_OPS_CPU_LANE_SUM_H_
