// Megatron indexed dataset: bounds-checked parsing of the .idx and little-endian reads of .bin.
#include "runtime/data/megatron_indexed.h"

#include <cstring>
#include <fstream>
#include <iterator>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace stagehand::runtime {
namespace {

constexpr char kMagic[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', '\0', '\0'};

absl::StatusOr<std::string> Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Item size of an integer dtype, 0 for a float or unknown code.
int ItemSize(uint8_t code) {
  switch (static_cast<MegatronDtype>(code)) {
    case MegatronDtype::kUint8: case MegatronDtype::kInt8: return 1;
    case MegatronDtype::kInt16: case MegatronDtype::kUint16: return 2;
    case MegatronDtype::kInt32: return 4;
    case MegatronDtype::kInt64: return 8;
    default: return 0;
  }
}

int64_t ReadToken(const char* p, MegatronDtype dtype) {
  switch (dtype) {
    case MegatronDtype::kUint8: return static_cast<uint8_t>(*p);
    case MegatronDtype::kInt8: return static_cast<int8_t>(*p);
    case MegatronDtype::kInt16: { int16_t v; std::memcpy(&v, p, 2); return v; }
    case MegatronDtype::kUint16: { uint16_t v; std::memcpy(&v, p, 2); return v; }
    case MegatronDtype::kInt32: { int32_t v; std::memcpy(&v, p, 4); return v; }
    default: { int64_t v; std::memcpy(&v, p, 8); return v; }
  }
}

template <typename T>
T Load(const std::string& bytes, uint64_t offset) {
  T v;
  std::memcpy(&v, bytes.data() + offset, sizeof(T));
  return v;
}

}  // namespace

std::string MegatronPrefix(const std::string& path) {
  if (absl::EndsWith(path, ".idx") || absl::EndsWith(path, ".bin")) {
    return path.substr(0, path.size() - 4);
  }
  return path;
}

bool LooksLikeMegatronIndexed(const std::string& path) {
  std::ifstream in(MegatronPrefix(path) + ".idx", std::ios::binary);
  char head[9];
  return in.read(head, 9) && std::memcmp(head, kMagic, 9) == 0;
}

absl::StatusOr<MegatronIndexedDataset> ReadMegatronIndexed(const std::string& path) {
  const std::string prefix = MegatronPrefix(path), idx_path = prefix + ".idx",
                    bin_path = prefix + ".bin";
  absl::StatusOr<std::string> idx = Slurp(idx_path);
  if (!idx.ok()) return idx.status();
  constexpr uint64_t kHeader = 9 + 8 + 1 + 8 + 8;
  if (idx->size() < kHeader) {
    return absl::DataLossError(absl::StrCat(idx_path, ": ", idx->size(),
                                            " bytes, shorter than the 34-byte header (truncated)"));
  }
  if (std::memcmp(idx->data(), kMagic, 9) != 0) {
    return absl::DataLossError(absl::StrCat(idx_path, ": wrong magic (expected \"MMIDIDX\\0\\0\"); "
                                            "not a Megatron indexed dataset"));
  }
  const uint64_t version = Load<uint64_t>(*idx, 9);
  if (version != 1) {
    return absl::DataLossError(absl::StrCat(idx_path, ": unsupported version ", version, " (expected 1)"));
  }
  const uint8_t code = Load<uint8_t>(*idx, 17);
  const int item = ItemSize(code);
  if (item == 0) {
    return absl::DataLossError(absl::StrCat(idx_path, ": dtype code ", int{code},
                                            " is not an integer token type (1-5 or 8)"));
  }
  const uint64_t num_sequences = Load<uint64_t>(*idx, 18), num_doc_idx = Load<uint64_t>(*idx, 26);
  const uint64_t needed = kHeader + num_sequences * 12 + num_doc_idx * 8;
  if (num_sequences > (idx->size() / 12) || num_doc_idx > idx->size() / 8 || idx->size() < needed) {
    return absl::DataLossError(absl::StrCat(idx_path, ": header says ", num_sequences,
                                            " sequences and ", num_doc_idx, " doc_idx entries (",
                                            needed, " bytes) but the file has ", idx->size(),
                                            " bytes (truncated)"));
  }
  // Megatron Core appends one int8 mode per sequence for multimodal data; nothing else may follow.
  if (idx->size() != needed && idx->size() != needed + num_sequences) {
    return absl::DataLossError(absl::StrCat(idx_path, ": ", idx->size() - needed,
                                            " unexpected bytes after doc_idx"));
  }
  absl::StatusOr<std::string> bin = Slurp(bin_path);
  if (!bin.ok()) return bin.status();
  const MegatronDtype dtype = static_cast<MegatronDtype>(code);
  MegatronIndexedDataset out;
  out.sequence_starts.push_back(0);
  const uint64_t sizes_at = kHeader, pointers_at = sizes_at + 4 * num_sequences,
                 doc_at = pointers_at + 8 * num_sequences;
  for (uint64_t s = 0; s < num_sequences; ++s) {
    const int32_t size = Load<int32_t>(*idx, sizes_at + 4 * s);
    const int64_t pointer = Load<int64_t>(*idx, pointers_at + 8 * s);
    if (size < 0 || pointer < 0 || uint64_t(pointer) + uint64_t(size) * item > bin->size()) {
      return absl::DataLossError(absl::StrCat(idx_path, ": sequence ", s, " (", size,
                                              " tokens at byte ", pointer, ") lies outside ",
                                              bin_path, " of ", bin->size(), " bytes"));
    }
    for (int32_t i = 0; i < size; ++i) {
      const int64_t t = ReadToken(bin->data() + pointer + int64_t{i} * item, dtype);
      if (t < 0 || t > INT32_MAX) {
        return absl::DataLossError(absl::StrCat(bin_path, ": token ", t, " in sequence ", s,
                                                " is not a token id"));
      }
      out.tokens.push_back(static_cast<int32_t>(t));
    }
    out.sequence_starts.push_back(static_cast<int64_t>(out.tokens.size()));
  }
  for (uint64_t d = 0; d < num_doc_idx; ++d) {
    const int64_t v = Load<int64_t>(*idx, doc_at + 8 * d);
    const int64_t prev = d == 0 ? 0 : out.doc_idx.back();
    if (v < prev || uint64_t(v) > num_sequences || (d == 0 && v != 0)) {
      return absl::DataLossError(absl::StrCat(idx_path, ": doc_idx[", d, "] = ", v,
                                              " is not non-decreasing from 0 to ", num_sequences));
    }
    out.doc_idx.push_back(v);
  }
  return out;
}

absl::Status WriteMegatronIndexed(const std::string& prefix,
                                  const std::vector<std::vector<int32_t>>& documents,
                                  MegatronDtype dtype) {
  const int item = ItemSize(static_cast<uint8_t>(dtype));
  if (item == 0) return absl::InvalidArgumentError("Megatron datasets hold integer tokens only");
  std::string bin, idx(kMagic, 9);
  auto put = [&idx](const auto& v) { idx.append(reinterpret_cast<const char*>(&v), sizeof(v)); };
  put(uint64_t{1});
  put(static_cast<uint8_t>(dtype));
  put(static_cast<uint64_t>(documents.size()));
  put(static_cast<uint64_t>(documents.size() + 1));
  for (const auto& doc : documents) put(static_cast<int32_t>(doc.size()));
  int64_t pointer = 0;
  for (const auto& doc : documents) {
    put(pointer);
    pointer += static_cast<int64_t>(doc.size()) * item;
    for (int32_t t : doc) {
      const int64_t v = t;
      bin.append(reinterpret_cast<const char*>(&v), item);  // little-endian truncation
    }
  }
  for (size_t d = 0; d <= documents.size(); ++d) put(static_cast<int64_t>(d));
  for (const auto& [path, bytes] : {std::pair{prefix + ".bin", &bin}, std::pair{prefix + ".idx", &idx}}) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out.write(bytes->data(), bytes->size())) {
      return absl::InternalError(absl::StrCat("cannot write ", path));
    }
  }
  return absl::OkStatus();
}

}  // namespace stagehand::runtime
