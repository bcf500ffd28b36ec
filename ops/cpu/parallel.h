// When the CPU ops fan a loop out to OpenMP threads: only with enough work to pay for waking
// them. Internal to ops/cpu; not a scheduler and not a thread pool.
#ifndef STAGEHAND_OPS_CPU_PARALLEL_H_
#define STAGEHAND_OPS_CPU_PARALLEL_H_

#include <cstdint>

namespace stagehand::ops::internal {

// Loops over fewer elements (or multiply-adds) than this run on the calling thread, as in
// `#pragma omp parallel for if (work >= kMinParallelWork)`. Every element is computed the same
// way serially and in parallel, so the threshold never changes a result.
inline constexpr int64_t kMinParallelWork = int64_t{1} << 14;

}  // namespace stagehand::ops::internal

#endif  // STAGEHAND_OPS_CPU_PARALLEL_H_
