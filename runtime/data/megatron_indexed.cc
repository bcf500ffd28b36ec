// Megatron indexed dataset: bounds-checked parsing of the .idx and little-endian reads of .bin.
#include "runtime/data/megatron_indexed.h"

#include <cstring>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "runtime/io/mapped_file.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {
namespace {

constexpr char kMagic[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', '\0', '\0'};

// A mapped file, its errors naming what it is.
absl::StatusOr<MappedFile> Map(const std::string& path) {
  absl::StatusOr<MappedFile> file = MappedFile::Open(path);
  if (!file.ok()) {
    return absl::Status(file.status().code(),
                        absl::StrCat("Megatron indexed dataset: ", file.status().message()));
  }
  return file;
}

// Item size of an integer dtype, 0 for a float or unknown code.
int ItemSize(uint8_t code) {
  switch (static_cast<MegatronDtype>(code)) {
    case MegatronDtype::kUint8:
    case MegatronDtype::kInt8:
      return 1;
    case MegatronDtype::kInt16:
    case MegatronDtype::kUint16:
      return 2;
    case MegatronDtype::kInt32:
      return 4;
    case MegatronDtype::kInt64:
      return 8;
    default:
      return 0;
  }
}

int64_t ReadToken(const char* p, MegatronDtype dtype) {
  switch (dtype) {
    case MegatronDtype::kUint8:
      return static_cast<uint8_t>(*p);
    case MegatronDtype::kInt8:
      return static_cast<int8_t>(*p);
    case MegatronDtype::kInt16: {
      int16_t v;
      std::memcpy(&v, p, 2);
      return v;
    }
    case MegatronDtype::kUint16: {
      uint16_t v;
      std::memcpy(&v, p, 2);
      return v;
    }
    case MegatronDtype::kInt32: {
      int32_t v;
      std::memcpy(&v, p, 4);
      return v;
    }
    default: {
      int64_t v;
      std::memcpy(&v, p, 8);
      return v;
    }
  }
}

template <typename T>
T Load(absl::string_view bytes, uint64_t offset) {
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

namespace {

constexpr uint64_t kHeader = 9 + 8 + 1 + 8 + 8;

// The .idx header and where its arrays start, checked against the file's size.
struct IdxLayout {
  MegatronDtype dtype;
  int item = 0;  // bytes per token in .bin
  uint64_t num_sequences = 0, num_doc_idx = 0;
  uint64_t sizes_at = kHeader, pointers_at = 0, doc_at = 0;
};

absl::StatusOr<IdxLayout> ParseIdxHeader(const std::string& idx_path, absl::string_view idx) {
  if (idx.size() < kHeader) {
    return absl::DataLossError(absl::StrCat(idx_path, ": ", idx.size(),
                                            " bytes, shorter than the 34-byte header (truncated)"));
  }
  if (std::memcmp(idx.data(), kMagic, 9) != 0) {
    return absl::DataLossError(absl::StrCat(idx_path,
                                            ": wrong magic (expected \"MMIDIDX\\0\\0\"); "
                                            "not a Megatron indexed dataset"));
  }
  const uint64_t version = Load<uint64_t>(idx, 9);
  if (version != 1) {
    return absl::DataLossError(
        absl::StrCat(idx_path, ": unsupported version ", version, " (expected 1)"));
  }
  IdxLayout l;
  const uint8_t code = Load<uint8_t>(idx, 17);
  l.item = ItemSize(code);
  if (l.item == 0) {
    return absl::DataLossError(absl::StrCat(idx_path, ": dtype code ", int{code},
                                            " is not an integer token type (1-5 or 8)"));
  }
  l.dtype = static_cast<MegatronDtype>(code);
  l.num_sequences = Load<uint64_t>(idx, 18);
  l.num_doc_idx = Load<uint64_t>(idx, 26);
  const uint64_t needed = kHeader + l.num_sequences * 12 + l.num_doc_idx * 8;
  if (l.num_sequences > (idx.size() / 12) || l.num_doc_idx > idx.size() / 8 ||
      idx.size() < needed) {
    return absl::DataLossError(absl::StrCat(idx_path, ": header says ", l.num_sequences,
                                            " sequences and ", l.num_doc_idx, " doc_idx entries (",
                                            needed, " bytes) but the file has ", idx.size(),
                                            " bytes (truncated)"));
  }
  // Megatron Core appends one int8 mode per sequence for multimodal data; nothing else may follow.
  if (idx.size() != needed && idx.size() != needed + l.num_sequences) {
    return absl::DataLossError(
        absl::StrCat(idx_path, ": ", idx.size() - needed, " unexpected bytes after doc_idx"));
  }
  l.pointers_at = l.sizes_at + 4 * l.num_sequences;
  l.doc_at = l.pointers_at + 8 * l.num_sequences;
  return l;
}

// Every sequence lies inside .bin; returns their total token count.
absl::StatusOr<uint64_t> CheckSequences(const IdxLayout& l, const MappedFile& idx,
                                        const MappedFile& bin) {
  uint64_t total = 0;
  for (uint64_t s = 0; s < l.num_sequences; ++s) {
    const int32_t size = Load<int32_t>(idx.bytes(), l.sizes_at + 4 * s);
    const int64_t pointer = Load<int64_t>(idx.bytes(), l.pointers_at + 8 * s);
    if (size < 0 || pointer < 0 || uint64_t(pointer) > bin.size() ||
        uint64_t(size) * l.item > bin.size() - uint64_t(pointer)) {
      return absl::DataLossError(absl::StrCat(idx.path(), ": sequence ", s, " (", size,
                                              " tokens at byte ", pointer, ") lies outside ",
                                              bin.path(), " of ", bin.size(), " bytes"));
    }
    total += uint64_t(size);
  }
  return total;
}

absl::Status ReadDocIdx(const IdxLayout& l, const MappedFile& idx, MegatronIndexedDataset& out) {
  for (uint64_t d = 0; d < l.num_doc_idx; ++d) {
    const int64_t v = Load<int64_t>(idx.bytes(), l.doc_at + 8 * d);
    const int64_t prev = d == 0 ? 0 : out.doc_idx.back();
    if (v < prev || uint64_t(v) > l.num_sequences || (d == 0 && v != 0)) {
      return absl::DataLossError(absl::StrCat(idx.path(), ": doc_idx[", d, "] = ", v,
                                              " is not non-decreasing from 0 to ",
                                              l.num_sequences));
    }
    out.doc_idx.push_back(v);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<MegatronIndexedDataset> ReadMegatronIndexed(const std::string& path) {
  return ReadMegatronIndexed(path, AvailableMemoryBytes());
}

absl::StatusOr<MegatronIndexedDataset> ReadMegatronIndexed(const std::string& path,
                                                           uint64_t memory_limit) {
  const std::string prefix = MegatronPrefix(path);
  ASSIGN_OR_RETURN(const MappedFile idx, Map(prefix + ".idx"));
  ASSIGN_OR_RETURN(const IdxLayout l, ParseIdxHeader(idx.path(), idx.bytes()));
  ASSIGN_OR_RETURN(const MappedFile bin, Map(prefix + ".bin"));
  ASSIGN_OR_RETURN(const uint64_t total, CheckSequences(l, idx, bin));
  // In memory: 4 bytes a token, 8 a sequence start and a doc_idx entry.
  RETURN_IF_ERROR(CheckFitsInMemory(
      absl::StrCat("Megatron indexed dataset ", prefix, " (", bin.size(), " bytes on disk) holds ",
                   total, " tokens in ", l.num_sequences, " sequences; reading them"),
      total * 4 + (l.num_sequences + l.num_doc_idx + 1) * 8, memory_limit));
  MegatronIndexedDataset out;
  out.tokens.reserve(total);
  out.sequence_starts.reserve(l.num_sequences + 1);
  out.sequence_starts.push_back(0);
  for (uint64_t s = 0; s < l.num_sequences; ++s) {
    const int32_t size = Load<int32_t>(idx.bytes(), l.sizes_at + 4 * s);
    const char* at = bin.bytes().data() + Load<int64_t>(idx.bytes(), l.pointers_at + 8 * s);
    for (int32_t i = 0; i < size; ++i) {
      const int64_t t = ReadToken(at + int64_t{i} * l.item, l.dtype);
      if (t < 0 || t > INT32_MAX) {
        return absl::DataLossError(
            absl::StrCat(bin.path(), ": token ", t, " in sequence ", s, " is not a token id"));
      }
      out.tokens.push_back(static_cast<int32_t>(t));
    }
    out.sequence_starts.push_back(static_cast<int64_t>(out.tokens.size()));
  }
  out.doc_idx.reserve(l.num_doc_idx);
  RETURN_IF_ERROR(ReadDocIdx(l, idx, out));
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
  for (const auto& [path, bytes] :
       {std::pair{prefix + ".bin", &bin}, std::pair{prefix + ".idx", &idx}}) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out.write(bytes->data(), bytes->size())) {
      return absl::InternalError(absl::StrCat("cannot write ", path));
    }
  }
  return absl::OkStatus();
}

}  // namespace stagehand::runtime
