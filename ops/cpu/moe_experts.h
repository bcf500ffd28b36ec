// MoE experts: E independent MLPs (linear, GELU or SwiGLU, linear), each over its own block of
// rows, built from the linear / gelu / swiglu ops: forward, input-gradient and weight-gradient
// as separate calls. A shared expert is the same call with E = 1 over all tokens. Not the
// routing (moe_dispatch.h) and not the weights' storage (the caller owns them).
#ifndef STAGEHAND_OPS_CPU_MOE_EXPERTS_H_
#define STAGEHAND_OPS_CPU_MOE_EXPERTS_H_

#include <cstdint>
#include <vector>

namespace stagehand::ops {

// Letters: E experts, R rows (grouped by expert), C channels, F an expert's hidden width, FC
// its first linear's width (F, or 2F for SwiGLU: [gate | up]).
struct MoeExpertShape {
  int C = 0;
  int F = 0;
  bool swiglu = false;  // false: GELU
  int FC() const { return swiglu ? 2 * F : F; }
};

// One expert's tensors (values, or their gradients); biases may be null.
template <typename Real>
struct MoeExpertTensors {
  Real* fc_weight = nullptr;    // (FC, C)
  Real* fc_bias = nullptr;      // (FC)
  Real* proj_weight = nullptr;  // (C, F)
  Real* proj_bias = nullptr;    // (C)
};

// F: for each expert e and its rows [offsets[e], offsets[e+1]) (offsets has E + 1 entries):
// fch = in @ fc^T + b (R, FC), act = activation(fch) (R, F), out = act @ proj^T + b (R, C).
template <typename Real>
void MoeExpertsForward(Real* out, Real* fch, Real* act, const Real* in,
                       const std::vector<MoeExpertTensors<const Real>>& experts,
                       const int64_t* offsets, const MoeExpertShape& shape);

// I: d_fch (R, FC) written (what W needs), d_act (R, F) scratch, d_in (R, C) += the input
// gradient, from d_out (R, C).
template <typename Real>
void MoeExpertsBackwardInput(Real* d_in, Real* d_fch, Real* d_act, const Real* d_out,
                             const Real* fch,
                             const std::vector<MoeExpertTensors<const Real>>& experts,
                             const int64_t* offsets, const MoeExpertShape& shape);

// W: each expert's gradients (grads[e]; null biases skipped) += from its rows of d_out, act,
// d_fch and in.
template <typename Real>
void MoeExpertsBackwardWeights(const std::vector<MoeExpertTensors<Real>>& grads, const Real* d_out,
                               const Real* act, const Real* d_fch, const Real* in,
                               const int64_t* offsets, const MoeExpertShape& shape);

}  // namespace stagehand::ops

#endif  // STAGEHAND_OPS_CPU_MOE_EXPERTS_H_
