// CUDA runtime and cuBLASLt return codes as absl::Status, with the failing call, file, line and
// a hint; CUDA_RETURN_IF_ERROR / CUBLASLT_RETURN_IF_ERROR propagate them. Not a logger, and
// not for NCCL (nccl_status.h) so that users of kernels need not link NCCL.
#ifndef STAGEHAND_OPS_CUDA_CUDA_STATUS_H_
#define STAGEHAND_OPS_CUDA_CUDA_STATUS_H_

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "runtime/util/status_macros.h"

namespace stagehand::ops::cuda {

// OK for cudaSuccess. Otherwise a status whose code says what the caller can do:
//   kFailedPrecondition  no GPU or no usable driver (errors 35, 100, 34, 222, ...): run elsewhere;
//   kResourceExhausted   out of device memory: free the cache or use a smaller microbatch;
//   kInternal            anything else (a launch failure or an illegal address is our bug).
// The message names the call, the file and line, CUDA's error name and text, and a hint.
absl::Status CudaStatus(cudaError_t error, const char* call, const char* file, int line);

// As CudaStatus, for cuBLASLt: kResourceExhausted for CUBLAS_STATUS_ALLOC_FAILED,
// kInvalidArgument for CUBLAS_STATUS_NOT_SUPPORTED / INVALID_VALUE (a shape or type cuBLASLt
// cannot do), kFailedPrecondition for NOT_INITIALIZED, kInternal otherwise.
absl::Status CublasLtStatus(cublasStatus_t status, const char* call, const char* file, int line);

// True for the errors that mean "this machine has no usable GPU" (as opposed to a failure).
bool IsNoGpuError(cudaError_t error);

}  // namespace stagehand::ops::cuda

// Returns from the enclosing function (absl::Status or StatusOr) unless `expr` (a CUDA runtime
// call) returns cudaSuccess.
#define CUDA_RETURN_IF_ERROR(expr) \
  RETURN_IF_ERROR(::stagehand::ops::cuda::CudaStatus((expr), #expr, __FILE__, __LINE__))

// After a kernel launch: returns the launch's error, if any (cudaGetLastError).
#define CUDA_RETURN_IF_LAUNCH_ERROR() CUDA_RETURN_IF_ERROR(cudaGetLastError())

#define CUBLASLT_RETURN_IF_ERROR(expr) \
  RETURN_IF_ERROR(::stagehand::ops::cuda::CublasLtStatus((expr), #expr, __FILE__, __LINE__))

#endif  // STAGEHAND_OPS_CUDA_CUDA_STATUS_H_
