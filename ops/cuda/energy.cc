// EnergyMeter over NVML opened with dlopen. NVML's C ABI is declared here for the five calls
// used (the toolkit here ships no nvml.h): nvmlReturn_t is an int (0 = success), a device
// handle an opaque pointer, and the energy counter an unsigned long long of millijoules.
#include "ops/cuda/energy.h"

#include <dlfcn.h>

#include "absl/strings/str_cat.h"

namespace stagehand::ops::cuda {

struct EnergyMeter::Api {
  using Device = void*;
  using Init = int (*)();
  using Shutdown = int (*)();
  using ErrorString = const char* (*)(int);
  using HandleByIndex = int (*)(unsigned int, Device*);
  using TotalEnergy = int (*)(Device, unsigned long long*);  // NOLINT(runtime/int): NVML's type
  void* library = nullptr;
  Init init = nullptr;
  Shutdown shutdown = nullptr;
  ErrorString error_string = nullptr;
  HandleByIndex handle_by_index = nullptr;
  TotalEnergy total_energy = nullptr;
  Device device = nullptr;
  bool initialised = false;

  // "nvmlX failed: <NVML's text> (code N)", as FailedPrecondition: the meter is unusable.
  absl::Status Error(const char* call, int code) const {
    return absl::FailedPreconditionError(absl::StrCat(
        "NVML: ", call, " failed: ", error_string != nullptr ? error_string(code) : "?", " (code ",
        code, ")"));
  }
  ~Api() {
    if (initialised && shutdown != nullptr) shutdown();
    if (library != nullptr) dlclose(library);
  }
};

EnergyMeter::EnergyMeter(std::unique_ptr<Api> api) : api_(std::move(api)) {}
EnergyMeter::~EnergyMeter() = default;

absl::StatusOr<std::unique_ptr<EnergyMeter>> EnergyMeter::Open(int index,
                                                               const std::string& library) {
  auto api = std::make_unique<Api>();
  api->library = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (api->library == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("NVML is not available (it comes with the NVIDIA driver): ", dlerror()));
  }
  const auto symbol = [&](const char* name) { return dlsym(api->library, name); };
  api->init = reinterpret_cast<Api::Init>(symbol("nvmlInit_v2"));
  api->shutdown = reinterpret_cast<Api::Shutdown>(symbol("nvmlShutdown"));
  api->error_string = reinterpret_cast<Api::ErrorString>(symbol("nvmlErrorString"));
  api->handle_by_index =
      reinterpret_cast<Api::HandleByIndex>(symbol("nvmlDeviceGetHandleByIndex_v2"));
  api->total_energy =
      reinterpret_cast<Api::TotalEnergy>(symbol("nvmlDeviceGetTotalEnergyConsumption"));
  if (api->init == nullptr || api->shutdown == nullptr || api->handle_by_index == nullptr ||
      api->total_energy == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(library, " lacks an NVML call this meter needs (driver too old?)"));
  }
  if (const int code = api->init(); code != 0) return api->Error("nvmlInit_v2", code);
  api->initialised = true;
  if (index < 0) return absl::InvalidArgumentError(absl::StrCat("device index ", index));
  if (const int code = api->handle_by_index(static_cast<unsigned int>(index), &api->device);
      code != 0) {
    return api->Error("nvmlDeviceGetHandleByIndex_v2", code);
  }
  std::unique_ptr<EnergyMeter> meter(new EnergyMeter(std::move(api)));
  // A device without the counter (older than Volta) says so now, not at the first step.
  if (absl::StatusOr<double> first = meter->TotalJoules(); !first.ok()) return first.status();
  return meter;
}

absl::StatusOr<double> EnergyMeter::TotalJoules() {
  unsigned long long millijoules = 0;  // NOLINT(runtime/int): NVML's type
  if (const int code = api_->total_energy(api_->device, &millijoules); code != 0) {
    return api_->Error("nvmlDeviceGetTotalEnergyConsumption", code);
  }
  return static_cast<double>(millijoules) * 1e-3;
}

}  // namespace stagehand::ops::cuda
