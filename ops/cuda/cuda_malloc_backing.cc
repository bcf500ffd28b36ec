// cudaMalloc / cudaFree behind MemoryBacking, errors as absl::Status. Not a cache (see
// caching_allocator.h).
#include "ops/cuda/cuda_malloc_backing.h"

#include <cuda_runtime_api.h>

#include "ops/cuda/cuda_status.h"

namespace stagehand::ops::cuda {

absl::StatusOr<void*> CudaMallocBacking::Allocate(size_t bytes) {
  void* pointer = nullptr;
  const cudaError_t error = cudaMalloc(&pointer, bytes);
  if (error == cudaErrorMemoryAllocation) cudaGetLastError();  // clear it: recoverable
  CUDA_RETURN_IF_ERROR(error);
  return pointer;
}

absl::Status CudaMallocBacking::Free(void* pointer) {
  CUDA_RETURN_IF_ERROR(cudaFree(pointer));
  return absl::OkStatus();
}

}  // namespace stagehand::ops::cuda
