// EnergyMeter: the GPU's energy counter through NVML (Megatron's energy monitor reads the same
// counter), for joules per step and per token in the training summary. NVML comes with the
// driver, not the toolkit: the library is opened at run time (libnvidia-ml.so.1), so builds and
// machines without it work and the meter says why it is unavailable. Every NVML call is checked.
// Not a power sampler and not a profiler.
#ifndef STAGEHAND_OPS_CUDA_ENERGY_H_
#define STAGEHAND_OPS_CUDA_ENERGY_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace stagehand::ops::cuda {

class EnergyMeter {
 public:
  // NVML's handle of device `index` (as nvidia-smi numbers it). kFailedPrecondition naming the
  // cause when NVML or the device is missing, or the device has no energy counter (pre-Volta).
  // `library` is the NVML library to open (tests name a missing one).
  static absl::StatusOr<std::unique_ptr<EnergyMeter>> Open(
      int index, const std::string& library = "libnvidia-ml.so.1");
  ~EnergyMeter();
  EnergyMeter(const EnergyMeter&) = delete;
  EnergyMeter& operator=(const EnergyMeter&) = delete;

  // Joules the device has used since the driver loaded (a monotonic counter).
  absl::StatusOr<double> TotalJoules();

 private:
  struct Api;
  explicit EnergyMeter(std::unique_ptr<Api> api);
  std::unique_ptr<Api> api_;
};

}  // namespace stagehand::ops::cuda

#endif  // STAGEHAND_OPS_CUDA_ENERGY_H_
