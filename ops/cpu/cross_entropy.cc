// Fused softmax + cross-entropy on the CPU, one row per token (llm.c's crossentropy_softmax).
// Not a loss reduction: per-token losses come out, and the caller chooses how to average them.
#include "ops/cpu/cross_entropy.h"

#include <cmath>
#include <cstdint>

#include "ops/cpu/lane_sum.h"
#include "ops/cpu/parallel.h"
#include "ops/cpu/vector_math.h"

namespace stagehand::ops {

// Letters: N rows (B*T), V vocabulary.

template <typename Real>
void SoftmaxCrossEntropyForward(Real* losses, Real* probs, const Real* logits,
                                const int32_t* targets, int N, int V) {
  const int64_t work = int64_t{N} * V;
#pragma omp parallel for schedule(static) if (work >= internal::kMinParallelWork)
  for (int n = 0; n < N; ++n) {
    const int64_t offset = static_cast<int64_t>(n) * V;
    const Real* x = logits + offset;          // (V)
    Real* p = probs + offset;                 // (V), may be x itself
    const Real target_logit = x[targets[n]];  // read before p overwrites x
    const Real max_logit = internal::MaxOf(x, V);
    for (int v = 0; v < V; ++v) p[v] = internal::Exp(x[v] - max_logit);
    const double sum = internal::LaneSum(V, [&](int64_t v) { return p[v]; });
    const Real inverse_sum = static_cast<Real>(1.0 / sum);
    for (int v = 0; v < V; ++v) p[v] *= inverse_sum;
    // -log(softmax[target]), from the logits rather than the rounded probability, so it stays
    // finite when the probability underflows.
    losses[n] = static_cast<Real>(
        std::log(sum) - (static_cast<double>(target_logit) - static_cast<double>(max_logit)));
  }
}

template <typename Real>
void SoftmaxCrossEntropyBackwardInput(Real* dlogits, const Real* probs, const int32_t* targets,
                                      const Real* dlosses, int N, int V) {
  const bool in_place = dlogits == probs;
  const int64_t work = int64_t{N} * V;
#pragma omp parallel for schedule(static) if (work >= internal::kMinParallelWork)
  for (int n = 0; n < N; ++n) {
    const int64_t offset = static_cast<int64_t>(n) * V;
    const Real* p = probs + offset;  // (V)
    Real* d = dlogits + offset;      // (V)
    const Real dloss = dlosses[n];
    const int target = targets[n];
    if (in_place) {
      for (int v = 0; v < V; ++v) d[v] = (p[v] - (v == target ? Real{1} : Real{0})) * dloss;
    } else {
      for (int v = 0; v < V; ++v) d[v] += (p[v] - (v == target ? Real{1} : Real{0})) * dloss;
    }
  }
}

template void SoftmaxCrossEntropyForward<float>(float*, float*, const float*, const int32_t*, int,
                                                int);
template void SoftmaxCrossEntropyForward<double>(double*, double*, const double*, const int32_t*,
                                                 int, int);
template void SoftmaxCrossEntropyBackwardInput<float>(float*, const float*, const int32_t*,
                                                      const float*, int, int);
template void SoftmaxCrossEntropyBackwardInput<double>(double*, const double*, const int32_t*,
                                                       const double*, int, int);

}  // namespace stagehand::ops
