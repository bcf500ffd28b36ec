// NCCL return codes as absl::Status with the failing call, file, line and a hint, and
// NCCL_RETURN_IF_ERROR to propagate them. Not a communicator wrapper (transports are runtime/).
#ifndef STAGEHAND_OPS_CUDA_NCCL_STATUS_H_
#define STAGEHAND_OPS_CUDA_NCCL_STATUS_H_

#include <nccl.h>

#include "absl/status/status.h"
#include "runtime/util/status_macros.h"

namespace stagehand::ops::cuda {

// OK for ncclSuccess. kFailedPrecondition for ncclSystemError (no GPU, no driver, no network
// the ranks can use); kInvalidArgument for ncclInvalidArgument / ncclInvalidUsage (our bug or a
// mismatched call across ranks); kUnavailable for ncclRemoteError (a peer failed, retry the
// job); kInternal otherwise. The message carries ncclGetErrorString and ncclGetLastError.
absl::Status NcclStatus(ncclResult_t result, const char* call, const char* file, int line);

}  // namespace stagehand::ops::cuda

#define NCCL_RETURN_IF_ERROR(expr) \
  RETURN_IF_ERROR(::stagehand::ops::cuda::NcclStatus((expr), #expr, __FILE__, __LINE__))

#endif  // STAGEHAND_OPS_CUDA_NCCL_STATUS_H_
