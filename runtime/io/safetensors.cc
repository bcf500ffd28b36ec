// Safetensors encoding with nlohmann-json for the header.
#include "runtime/io/safetensors.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "runtime/io/atomic_file.h"

namespace stagehand::runtime {

absl::Status WriteSafetensors(const std::string& path, const std::vector<NamedTensor>& tensors) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  header["__metadata__"] = {{"format", "pt"}, {"producer", "stagehand"}};
  uint64_t offset = 0;
  for (const NamedTensor& t : tensors) {
    int64_t expected = 1;
    for (int64_t d : t.shape) expected *= d;
    if (expected != static_cast<int64_t>(t.data.size())) {
      return absl::InvalidArgumentError(absl::StrCat("tensor ", t.name, " has ", t.data.size(),
                                                     " values but its shape holds ", expected));
    }
    uint64_t bytes = t.data.size() * sizeof(float);
    header[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  while (text.size() % 8 != 0) text.push_back(' ');
  uint64_t n = text.size();
  char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<char>(n >> (8 * i));
  std::vector<absl::string_view> pieces = {absl::string_view(len, 8), text};
  for (const NamedTensor& t : tensors) {
    pieces.emplace_back(reinterpret_cast<const char*>(t.data.data()), t.data.size() * sizeof(float));
  }
  return WriteFileAtomically(path, pieces);
}

absl::StatusOr<std::map<std::string, NamedTensor>> ReadSafetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() < 8) return absl::DataLossError(absl::StrCat(path, ": shorter than 8 bytes"));
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t{static_cast<unsigned char>(bytes[i])} << (8 * i);
  if (n > bytes.size() - 8) {
    return absl::DataLossError(absl::StrCat(path, ": header of ", n, " bytes past the end of the file"));
  }
  nlohmann::json header = nlohmann::json::parse(bytes.substr(8, n), nullptr, false);
  if (header.is_discarded() || !header.is_object()) {
    return absl::DataLossError(absl::StrCat(path, ": header is not a JSON object"));
  }
  const uint64_t data_start = 8 + n, data_size = bytes.size() - data_start;
  std::map<std::string, NamedTensor> out;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const nlohmann::json& e = it.value();
    if (!e.is_object() || e.value("dtype", "") != "F32" || !e.contains("shape") ||
        !e.contains("data_offsets") || !e["shape"].is_array() || !e["data_offsets"].is_array() ||
        e["data_offsets"].size() != 2) {
      return absl::DataLossError(absl::StrCat(path, ": tensor ", it.key(),
                                              " needs dtype F32, a shape and two data_offsets"));
    }
    NamedTensor t;
    t.name = it.key();
    int64_t count = 1;
    for (const auto& d : e["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) {
        return absl::DataLossError(absl::StrCat(path, ": tensor ", t.name, " has a bad shape"));
      }
      t.shape.push_back(d.get<int64_t>());
      count *= t.shape.back();
    }
    uint64_t begin = e["data_offsets"][0].get<uint64_t>(), end = e["data_offsets"][1].get<uint64_t>();
    if (end < begin || end > data_size || end - begin != count * sizeof(float)) {
      return absl::DataLossError(absl::StrCat(path, ": tensor ", t.name, " data [", begin, ", ", end,
                                              ") does not fit its shape or the file (truncated?)"));
    }
    t.data.resize(count);
    std::memcpy(t.data.data(), bytes.data() + data_start + begin, end - begin);
    out[t.name] = std::move(t);
  }
  return out;
}

}  // namespace stagehand::runtime
