// ProbeDevice: the CUDA runtime's view of the current device, with a "no GPU" status where
// there is none. Not a device picker and not NVML.
#include "ops/cuda/device.h"

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "ops/cuda/cuda_status.h"

namespace stagehand::ops::cuda {

absl::StatusOr<DeviceInfo> ProbeDevice() {
  DeviceInfo info;
  CUDA_RETURN_IF_ERROR(cudaRuntimeGetVersion(&info.runtime_version));
  CUDA_RETURN_IF_ERROR(cudaDriverGetVersion(&info.driver_version));
  if (info.driver_version == 0) {
    return absl::FailedPreconditionError(
        "no GPU: no NVIDIA driver is installed (cudaDriverGetVersion reports 0)");
  }
  CUDA_RETURN_IF_ERROR(cudaGetDeviceCount(&info.device_count));
  if (info.device_count == 0) return absl::FailedPreconditionError("no GPU: no CUDA device");
  CUDA_RETURN_IF_ERROR(cudaGetDevice(&info.device));
  cudaDeviceProp properties;
  CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&properties, info.device));
  info.name = properties.name;
  info.compute_major = properties.major;
  info.compute_minor = properties.minor;
  info.total_memory_bytes = static_cast<int64_t>(properties.totalGlobalMem);
  info.multiprocessors = properties.multiProcessorCount;
  if (info.compute_major < 9) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no GPU: ", DescribeDevice(info), " is older than sm_90, which the kernels are built for"));
  }
  return info;
}

std::string DescribeDevice(const DeviceInfo& info) {
  return absl::StrFormat(
      "%s, sm_%d%d, %.1f GiB, %d SMs, driver %d.%d, runtime %d.%d", info.name, info.compute_major,
      info.compute_minor, static_cast<double>(info.total_memory_bytes) / (1 << 30),
      info.multiprocessors, info.driver_version / 1000, info.driver_version % 1000 / 10,
      info.runtime_version / 1000, info.runtime_version % 1000 / 10);
}

}  // namespace stagehand::ops::cuda
