// CUDA runtime and cuBLASLt return codes turned into absl::Status with call, place and hint.
// Not a retry policy: callers decide what to do with the code.
#include "ops/cuda/cuda_status.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace stagehand::ops::cuda {
namespace {

const char* CudaHint(cudaError_t error) {
  switch (error) {
    case cudaErrorInsufficientDriver:
      return "no GPU: no NVIDIA driver (libcuda.so.1) is loaded, or it is older than this "
             "CUDA runtime; run on a GPU node";
    case cudaErrorNoDevice:
      return "no GPU: the driver sees no CUDA device (check CUDA_VISIBLE_DEVICES and nvidia-smi)";
    case cudaErrorStubLibrary:
      return "no GPU: the CUDA driver stub library was loaded instead of the real libcuda";
    case cudaErrorUnsupportedPtxVersion:
    case cudaErrorCallRequiresNewerDriver:
      return "no GPU: the driver is too old for this CUDA build; update the driver";
    case cudaErrorNoKernelImageForDevice:
      return "the kernels are built for sm_90 (+compute_90 PTX); this GPU cannot run them";
    case cudaErrorMemoryAllocation:
      return "out of device memory: release cached blocks or use a smaller microbatch";
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
      return "a kernel faulted; rerun with compute-sanitizer to find it (a bug in Stagehand)";
    case cudaErrorInvalidConfiguration:
      return "bad launch configuration (grid or block size; a bug in Stagehand)";
    default:
      return "see the CUDA runtime documentation for this error";
  }
}

const char* CublasLtName(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS:
      return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR:
      return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR:
      return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR:
      return "CUBLAS_STATUS_LICENSE_ERROR";
    default:
      return "unknown cublasStatus_t";
  }
}

}  // namespace

bool IsNoGpuError(cudaError_t error) {
  return error == cudaErrorInsufficientDriver || error == cudaErrorNoDevice ||
         error == cudaErrorStubLibrary || error == cudaErrorUnsupportedPtxVersion ||
         error == cudaErrorCallRequiresNewerDriver || error == cudaErrorDevicesUnavailable;
}

absl::Status CudaStatus(cudaError_t error, const char* call, const char* file, int line) {
  if (error == cudaSuccess) return absl::OkStatus();
  const std::string message = absl::StrCat(call, " failed at ", file, ":", line, ": ",
                                           cudaGetErrorName(error), " (", static_cast<int>(error),
                                           ", ", cudaGetErrorString(error), "); ", CudaHint(error));
  if (IsNoGpuError(error)) return absl::FailedPreconditionError(message);
  if (error == cudaErrorMemoryAllocation) return absl::ResourceExhaustedError(message);
  return absl::InternalError(message);
}

absl::Status CublasLtStatus(cublasStatus_t status, const char* call, const char* file, int line) {
  if (status == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  const std::string where = absl::StrCat(call, " failed at ", file, ":", line, ": ",
                                         CublasLtName(status), " (", static_cast<int>(status), ")");
  switch (status) {
    case CUBLAS_STATUS_ALLOC_FAILED:
      return absl::ResourceExhaustedError(
          absl::StrCat(where, "; cuBLASLt could not allocate: free device memory"));
    case CUBLAS_STATUS_NOT_SUPPORTED:
    case CUBLAS_STATUS_INVALID_VALUE:
      return absl::InvalidArgumentError(
          absl::StrCat(where, "; cuBLASLt cannot do this shape, layout or type combination"));
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return absl::FailedPreconditionError(
          absl::StrCat(where, "; no GPU or cuBLASLt handle not created"));
    default:
      return absl::InternalError(absl::StrCat(where, "; a cuBLASLt failure (see its docs)"));
  }
}

}  // namespace stagehand::ops::cuda
