// The collectives' fixed summation order on the GPU: out[k] = ((p0[k] + p1[k]) + p2[k]) + ...
// in fp32, one rounding per add, as runtime::SumInMemberOrder does on the host
// (runtime/collectives/collective.h), so a reduction over NCCL or between replicas on one GPU
// is bitwise the CPU run's. Elementwise; no tree, no FMA.
#ifndef STAGEHAND_OPS_CUDA_ORDERED_SUM_H_
#define STAGEHAND_OPS_CUDA_ORDERED_SUM_H_

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "absl/status/status.h"

namespace stagehand::ops::cuda {

// out (n) = the parts (each n device floats) summed in their order. `out` may alias parts[0]
// but no other part. InvalidArgument for no parts or a null one. Any number of parts: more
// than one launch holds are summed launch after launch, each continuing from `out`, which keeps
// the order.
absl::Status SumInMemberOrder(const std::vector<const float*>& parts, float* out, int64_t n,
                              cudaStream_t stream);

}  // namespace stagehand::ops::cuda

#endif  // STAGEHAND_OPS_CUDA_ORDERED_SUM_H_
