// NCCL results turned into absl::Status with call, place and hint. Not a retry policy.
#include "ops/cuda/nccl_status.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace stagehand::ops::cuda {

absl::Status NcclStatus(ncclResult_t result, const char* call, const char* file, int line) {
  if (result == ncclSuccess) return absl::OkStatus();
  const char* last = ncclGetLastError(nullptr);
  const std::string where =
      absl::StrCat(call, " failed at ", file, ":", line, ": ", ncclGetErrorString(result), " (",
                   static_cast<int>(result), ")", last != nullptr && *last ? ": " : "",
                   last != nullptr ? last : "");
  switch (result) {
    case ncclSystemError:
      return absl::FailedPreconditionError(absl::StrCat(
          where, "; a system call or CUDA failed: check the GPU, driver and NCCL_SOCKET_IFNAME"));
    case ncclInvalidArgument:
    case ncclInvalidUsage:
      return absl::InvalidArgumentError(absl::StrCat(
          where, "; the ranks disagree on the call or its arguments (set NCCL_DEBUG=WARN)"));
    case ncclRemoteError:
      return absl::UnavailableError(
          absl::StrCat(where, "; a peer rank failed or went away: restart the job"));
    default:
      return absl::InternalError(absl::StrCat(where, "; set NCCL_DEBUG=INFO for details"));
  }
}

}  // namespace stagehand::ops::cuda
