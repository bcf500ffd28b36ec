// The caching allocator's backing on a GPU: cudaMalloc / cudaFree on the current device.
// Never managed (unified) memory, never host memory.
#ifndef STAGEHAND_OPS_CUDA_CUDA_MALLOC_BACKING_H_
#define STAGEHAND_OPS_CUDA_CUDA_MALLOC_BACKING_H_

#include <cstddef>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ops/cuda/caching_allocator.h"

namespace stagehand::ops::cuda {

class CudaMallocBacking : public MemoryBacking {
 public:
  // kResourceExhausted when the device is full, kFailedPrecondition when there is no GPU.
  absl::StatusOr<void*> Allocate(size_t bytes) override;
  absl::Status Free(void* pointer) override;
};

}  // namespace stagehand::ops::cuda

#endif  // STAGEHAND_OPS_CUDA_CUDA_MALLOC_BACKING_H_
