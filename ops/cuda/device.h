// Which CUDA device this process sees, probed once without side effects beyond creating the
// runtime's context: for GPU tests to skip with a reason, and for logs. Not device selection.
#ifndef STAGEHAND_OPS_CUDA_DEVICE_H_
#define STAGEHAND_OPS_CUDA_DEVICE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace stagehand::ops::cuda {

struct DeviceInfo {
  int device_count = 0;
  int device = 0;  // the current device, which the fields below describe
  std::string name;
  int compute_major = 0;
  int compute_minor = 0;
  int64_t total_memory_bytes = 0;
  int multiprocessors = 0;
  int driver_version = 0;  // e.g. 13000 for 13.0
  int runtime_version = 0;
};

// The current device's description, or kFailedPrecondition saying "no GPU: ..." (no driver,
// no device, driver too old) or "no GPU: ... needs sm_90" when the device is older than Hopper.
absl::StatusOr<DeviceInfo> ProbeDevice();

// One line for logs and test output: "NVIDIA H200, sm_90, 139.8 GiB, 132 SMs, driver 13.0".
std::string DescribeDevice(const DeviceInfo& info);

}  // namespace stagehand::ops::cuda

#endif  // STAGEHAND_OPS_CUDA_DEVICE_H_
