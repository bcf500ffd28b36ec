// llm.c shard reading and writing (little-endian, as llm.c writes them on x86).
#include "runtime/data/llmc_shard.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "runtime/io/atomic_file.h"
#include "runtime/io/mapped_file.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {

bool LooksLikeLlmcShard(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  int32_t magic = 0;
  return in.read(reinterpret_cast<char*>(&magic), sizeof(magic)) && magic == kLlmcShardMagic;
}

absl::Status AppendLlmcShard(const std::string& path, std::vector<int32_t>* tokens) {
  return AppendLlmcShard(path, tokens, AvailableMemoryBytes());
}

absl::Status AppendLlmcShard(const std::string& path, std::vector<int32_t>* tokens,
                             uint64_t memory_limit) {
  absl::StatusOr<MappedFile> file = MappedFile::Open(path);
  if (!file.ok()) {
    return absl::Status(file.status().code(),
                        absl::StrCat("llm.c shard: ", file.status().message()));
  }
  const absl::string_view bytes = file->bytes();
  const size_t header_bytes = kLlmcHeaderInts * sizeof(int32_t);
  if (bytes.size() < header_bytes) {
    return absl::DataLossError(absl::StrCat("llm.c shard ", path, " has ", bytes.size(),
                                            " bytes, less than its 1024-byte header (truncated)"));
  }
  int32_t header[kLlmcHeaderInts];
  std::memcpy(header, bytes.data(), header_bytes);
  if (header[0] == 20240801) {
    return absl::DataLossError(absl::StrCat("llm.c shard ", path,
                                            " is a LLaMA-3 shard (magic 20240801, uint32 tokens); "
                                            "only GPT-2 shards (magic 20240520) are supported"));
  }
  if (header[0] != kLlmcShardMagic) {
    return absl::DataLossError(absl::StrCat("llm.c shard ", path, ": wrong magic ", header[0],
                                            " (expected ", kLlmcShardMagic, ")"));
  }
  if (header[1] != kLlmcShardVersion) {
    return absl::DataLossError(absl::StrCat("llm.c shard ", path, ": unsupported version ",
                                            header[1], " (expected ", kLlmcShardVersion, ")"));
  }
  const int64_t count = header[2];
  const uint64_t expected = header_bytes + uint64_t(count) * sizeof(uint16_t);
  if (count < 0 || bytes.size() != expected) {
    return absl::DataLossError(absl::StrCat("llm.c shard ", path, ": header says ", count,
                                            " tokens (", expected, " bytes) but the file has ",
                                            bytes.size(), " bytes (truncated or corrupt)"));
  }
  RETURN_IF_ERROR(
      CheckFitsInMemory(absl::StrCat("llm.c shard ", path, " (", bytes.size(),
                                     " bytes on disk) holds ", count, " tokens; reading them"),
                        uint64_t(count) * sizeof(int32_t), memory_limit));
  const size_t base = tokens->size();
  tokens->resize(base + count);
  const char* data = bytes.data() + header_bytes;
  for (int64_t i = 0; i < count; ++i) {
    uint16_t t;
    std::memcpy(&t, data + i * sizeof(uint16_t), sizeof(t));
    (*tokens)[base + i] = t;
  }
  return absl::OkStatus();
}

absl::Status WriteLlmcShard(const std::string& path, const std::vector<int32_t>& tokens) {
  if (tokens.size() > 0x7FFFFFFFu) {
    return absl::InvalidArgumentError(
        absl::StrCat(tokens.size(), " tokens do not fit one llm.c shard"));
  }
  std::vector<uint16_t> data(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] > 0xFFFF) {
      return absl::InvalidArgumentError(absl::StrCat("token ", tokens[i], " at position ", i,
                                                     " does not fit an llm.c shard's uint16"));
    }
    data[i] = static_cast<uint16_t>(tokens[i]);
  }
  int32_t header[kLlmcHeaderInts] = {kLlmcShardMagic, kLlmcShardVersion,
                                     static_cast<int32_t>(tokens.size())};
  return WriteFileAtomically(
      path, {absl::string_view(reinterpret_cast<const char*>(header), sizeof(header)),
             absl::string_view(reinterpret_cast<const char*>(data.data()),
                               data.size() * sizeof(uint16_t))});
}

}  // namespace stagehand::runtime
