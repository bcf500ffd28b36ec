// MoE experts on the CPU: expert after expert, each a dense MLP through the linear, gelu and
// swiglu ops on its rows (an expert without rows is skipped); results do not depend on threads.
#include "ops/cpu/moe_experts.h"

#include <cstring>

#include "ops/cpu/gelu.h"
#include "ops/cpu/linear.h"
#include "ops/cpu/swiglu.h"

namespace stagehand::ops {
namespace {

// Calls body(e, begin, rows) for each of the E experts that has rows: [begin, begin + rows).
template <typename Body>
void ForEachExpertWithRows(size_t E, const int64_t* offsets, Body body) {
  for (size_t e = 0; e < E; ++e) {
    const int64_t begin = offsets[e];
    const int rows = static_cast<int>(offsets[e + 1] - begin);
    if (rows != 0) body(e, begin, rows);
  }
}

}  // namespace

template <typename Real>
void MoeExpertsForward(Real* out, Real* fch, Real* act, const Real* in,
                       const std::vector<MoeExpertTensors<const Real>>& experts,
                       const int64_t* offsets, const MoeExpertShape& s) {
  const int C = s.C, F = s.F, FC = s.FC();
  ForEachExpertWithRows(experts.size(), offsets, [&](size_t e, int64_t begin, int rows) {
    Real* h = fch + begin * FC;
    Real* a = act + begin * F;
    LinearForward<Real>(h, in + begin * C, experts[e].fc_weight, experts[e].fc_bias, rows, C, FC);
    if (s.swiglu) {
      SwiGluForward(a, h, rows, F);
    } else {
      GeluForward(a, h, int64_t{rows} * F);
    }
    LinearForward<Real>(out + begin * C, a, experts[e].proj_weight, experts[e].proj_bias, rows, F,
                        C);
  });
}

template <typename Real>
void MoeExpertsBackwardInput(Real* d_in, Real* d_fch, Real* d_act, const Real* d_out,
                             const Real* fch,
                             const std::vector<MoeExpertTensors<const Real>>& experts,
                             const int64_t* offsets, const MoeExpertShape& s) {
  const int C = s.C, F = s.F, FC = s.FC();
  ForEachExpertWithRows(experts.size(), offsets, [&](size_t e, int64_t begin, int rows) {
    Real* da = d_act + begin * F;
    Real* dh = d_fch + begin * FC;
    std::memset(da, 0, sizeof(Real) * rows * F);
    LinearBackwardInput<Real>(da, d_out + begin * C, experts[e].proj_weight, rows, F, C);
    std::memset(dh, 0, sizeof(Real) * rows * FC);
    if (s.swiglu) {
      SwiGluBackwardInput(dh, fch + begin * FC, da, rows, F);
    } else {
      GeluBackwardInput(dh, fch + begin * FC, da, int64_t{rows} * F);
    }
    LinearBackwardInput<Real>(d_in + begin * C, dh, experts[e].fc_weight, rows, C, FC);
  });
}

template <typename Real>
void MoeExpertsBackwardWeights(const std::vector<MoeExpertTensors<Real>>& grads, const Real* d_out,
                               const Real* act, const Real* d_fch, const Real* in,
                               const int64_t* offsets, const MoeExpertShape& s) {
  const int C = s.C, F = s.F, FC = s.FC();
  ForEachExpertWithRows(grads.size(), offsets, [&](size_t e, int64_t begin, int rows) {
    LinearBackwardWeights<Real>(grads[e].proj_weight, grads[e].proj_bias, d_out + begin * C,
                                act + begin * F, rows, F, C);
    LinearBackwardWeights<Real>(grads[e].fc_weight, grads[e].fc_bias, d_fch + begin * FC,
                                in + begin * C, rows, C, FC);
  });
}

#define STAGEHAND_INSTANTIATE_MOE_EXPERTS(Real)                                                 \
  template void MoeExpertsForward<Real>(Real*, Real*, Real*, const Real*,                       \
                                        const std::vector<MoeExpertTensors<const Real>>&,       \
                                        const int64_t*, const MoeExpertShape&);                 \
  template void MoeExpertsBackwardInput<Real>(Real*, Real*, Real*, const Real*, const Real*,    \
                                              const std::vector<MoeExpertTensors<const Real>>&, \
                                              const int64_t*, const MoeExpertShape&);           \
  template void MoeExpertsBackwardWeights<Real>(                                                \
      const std::vector<MoeExpertTensors<Real>>&, const Real*, const Real*, const Real*,        \
      const Real*, const int64_t*, const MoeExpertShape&);
STAGEHAND_INSTANTIATE_MOE_EXPERTS(float)
STAGEHAND_INSTANTIATE_MOE_EXPERTS(double)

}  // namespace stagehand::ops
