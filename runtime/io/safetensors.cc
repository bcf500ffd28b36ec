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
    header[t.name] = {
        {"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  while (text.size() % 8 != 0) text.push_back(' ');
  uint64_t n = text.size();
  char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<char>(n >> (8 * i));
  std::vector<absl::string_view> pieces = {absl::string_view(len, 8), text};
  for (const NamedTensor& t : tensors) {
    pieces.emplace_back(reinterpret_cast<const char*>(t.data.data()),
                        t.data.size() * sizeof(float));
  }
  return WriteFileAtomically(path, pieces);
}

namespace {

// One header entry: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, every
// field checked for its JSON type and range before use.
absl::StatusOr<NamedTensor> ReadTensor(const std::string& path, const std::string& name,
                                       const nlohmann::json& e, const std::string& bytes,
                                       uint64_t data_start, uint64_t data_size) {
  auto bad = [&](const std::string& what) {
    return absl::DataLossError(absl::StrCat(path, ": tensor ", name, " ", what));
  };
  if (!e.is_object()) return bad("is not a JSON object");
  const auto dtype = e.find("dtype");
  if (dtype == e.end() || !dtype->is_string() || dtype->get<std::string>() != "F32") {
    return bad("needs dtype \"F32\" (the only dtype this reader takes)");
  }
  const auto shape = e.find("shape");
  if (shape == e.end() || !shape->is_array()) return bad("needs a shape array");
  NamedTensor t;
  t.name = name;
  uint64_t count = 1;
  constexpr uint64_t kMaxCount = (uint64_t{1} << 62) / sizeof(float);
  for (const nlohmann::json& d : *shape) {
    if (!d.is_number_unsigned() || d.get<uint64_t>() > kMaxCount) {
      return bad(absl::StrCat("has a bad shape entry ", d.dump(), " (not a size)"));
    }
    const uint64_t dim = d.get<uint64_t>();
    if (dim != 0 && count > kMaxCount / dim) return bad("has a shape whose product overflows");
    count *= dim;
    t.shape.push_back(static_cast<int64_t>(dim));
  }
  const auto offsets = e.find("data_offsets");
  if (offsets == e.end() || !offsets->is_array() || offsets->size() != 2 ||
      !(*offsets)[0].is_number_unsigned() || !(*offsets)[1].is_number_unsigned()) {
    return bad("needs data_offsets: two non-negative integers");
  }
  const uint64_t begin = (*offsets)[0].get<uint64_t>(), end = (*offsets)[1].get<uint64_t>();
  if (end < begin || end > data_size || end - begin != count * sizeof(float)) {
    return bad(absl::StrCat("data_offsets [", begin, ", ", end,
                            ") do not fit its shape or the file (truncated?)"));
  }
  t.data.resize(count);
  if (count > 0) std::memcpy(t.data.data(), bytes.data() + data_start + begin, end - begin);
  return t;
}

}  // namespace

absl::StatusOr<std::map<std::string, NamedTensor>> ReadSafetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() < 8) return absl::DataLossError(absl::StrCat(path, ": shorter than 8 bytes"));
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t{static_cast<unsigned char>(bytes[i])} << (8 * i);
  if (n > bytes.size() - 8) {
    return absl::DataLossError(
        absl::StrCat(path, ": header of ", n, " bytes past the end of the file"));
  }
  nlohmann::json header = nlohmann::json::parse(bytes.substr(8, n), nullptr, false);
  if (header.is_discarded() || !header.is_object()) {
    return absl::DataLossError(absl::StrCat(path, ": header is not a JSON object"));
  }
  const uint64_t data_start = 8 + n, data_size = bytes.size() - data_start;
  std::map<std::string, NamedTensor> out;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    absl::StatusOr<NamedTensor> t =
        ReadTensor(path, it.key(), it.value(), bytes, data_start, data_size);
    if (!t.ok()) return t.status();
    out[t->name] = *std::move(t);
  }
  return out;
}

}  // namespace stagehand::runtime
