// AdamW (decoupled weight decay) with global-norm gradient clipping, over flat buffers.
// Not a learning-rate schedule and not a distributed optimizer: callers pass lr per step
// and combine per-shard squared norms themselves (in a fixed order, for determinism).
#ifndef STAGEHAND_OPS_CPU_ADAMW_H_
#define STAGEHAND_OPS_CPU_ADAMW_H_

#include <cstdint>

namespace stagehand::ops {

struct AdamWOptions {
  double learning_rate = 3e-4;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double epsilon = 1e-8;
  double weight_decay = 0.0;  // decoupled: param -= lr * weight_decay * param
};

// Sum of squares of x (n), accumulated in double, bitwise deterministic (fixed blocks
// combined in a fixed order, independent of thread count).
template <typename Real>
double SumOfSquares(const Real* x, int64_t n);

// The factor that global-norm clipping multiplies gradients by: min(1, max_norm / norm).
// max_norm <= 0 disables clipping (returns 1).
double ClipScale(double global_norm, double max_norm);

// One AdamW step on n parameters. step is 1-based (bias correction). Each gradient is first
// multiplied by grad_scale (the clip factor). m and v are the moment buffers (n each).
template <typename Real>
void AdamWUpdate(Real* params, const Real* grads, Real* m, Real* v, int64_t n,
                 const AdamWOptions& options, int step, double grad_scale);

}  // namespace stagehand::ops

#endif  // STAGEHAND_OPS_CPU_ADAMW_H_
