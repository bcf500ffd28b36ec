// Reading and writing float32 safetensors files (8-byte little-endian header length, JSON
// header, raw data). Not a general tensor library: F32 only, whole file in memory.
#ifndef STAGEHAND_RUNTIME_IO_SAFETENSORS_H_
#define STAGEHAND_RUNTIME_IO_SAFETENSORS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace stagehand::runtime {

struct NamedTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;
};

// Writes atomically: a temporary file beside `path`, flushed and fsync'ed, then renamed.
absl::Status WriteSafetensors(const std::string& path, const std::vector<NamedTensor>& tensors);

// Reads every tensor. DataLoss for a truncated or malformed file, naming what is wrong.
absl::StatusOr<std::map<std::string, NamedTensor>> ReadSafetensors(const std::string& path);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_IO_SAFETENSORS_H_
