// llm.c's token shards: a header of 256 int32 (magic 20240520, version 1, token count)
// followed by the tokens as uint16. Also the cache format of tokenised text corpora.
// Not llm.c's LLaMA-3 shards (magic 20240801, uint32 tokens): those are rejected by name.
#ifndef STAGEHAND_RUNTIME_DATA_LLMC_SHARD_H_
#define STAGEHAND_RUNTIME_DATA_LLMC_SHARD_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace stagehand::runtime {

inline constexpr int32_t kLlmcShardMagic = 20240520;
inline constexpr int32_t kLlmcShardVersion = 1;
inline constexpr int kLlmcHeaderInts = 256;

// True when `path` is a regular file that starts with the llm.c GPT-2 magic.
bool LooksLikeLlmcShard(const std::string& path);

// Appends the shard's tokens to `tokens`, reading the file through a read-only mapping (no
// second copy of it in memory). NotFound for a missing file; InvalidArgument for something
// that is not a regular file; DataLoss for a wrong magic or version, or a size that disagrees
// with the header's token count (truncated); ResourceExhausted, naming the file and the sizes,
// when its tokens (4 bytes each in memory) need more than `memory_limit` bytes (by default
// the memory available now), checked before anything is allocated.
absl::Status AppendLlmcShard(const std::string& path, std::vector<int32_t>* tokens);
absl::Status AppendLlmcShard(const std::string& path, std::vector<int32_t>* tokens,
                             uint64_t memory_limit);

// Writes `tokens` (each in [0, 65536)) as a shard, atomically (temporary name, fsync, rename).
absl::Status WriteLlmcShard(const std::string& path, const std::vector<int32_t>& tokens);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_DATA_LLMC_SHARD_H_
