// Megatron's indexed dataset (MMapIndexedDataset): PREFIX.idx holds magic "MMIDIDX\0\0",
// version 1, a dtype code, sequence and document counts, sizes (int32), pointers (int64,
// byte offsets into PREFIX.bin) and doc_idx (int64); PREFIX.bin holds the tokens.
// The files are read through read-only mappings; the tokens are decoded into memory, as every
// corpus here is.
#ifndef STAGEHAND_RUNTIME_DATA_MEGATRON_INDEXED_H_
#define STAGEHAND_RUNTIME_DATA_MEGATRON_INDEXED_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace stagehand::runtime {

// Megatron's DType codes.
enum class MegatronDtype : uint8_t {
  kUint8 = 1,
  kInt8 = 2,
  kInt16 = 3,
  kInt32 = 4,
  kInt64 = 5,
  kFloat64 = 6,
  kFloat32 = 7,
  kUint16 = 8
};

struct MegatronIndexedDataset {
  std::vector<int32_t> tokens;           // every sequence, concatenated in order
  std::vector<int64_t> sequence_starts;  // (S + 1) offsets of each sequence into tokens
  std::vector<int64_t> doc_idx;          // (D + 1) sequence index where each document starts
};

// "PREFIX" from "PREFIX", "PREFIX.idx" or "PREFIX.bin".
std::string MegatronPrefix(const std::string& path);
// True when PREFIX.idx exists and starts with the magic.
bool LooksLikeMegatronIndexed(const std::string& path);

// Reads PREFIX.idx and PREFIX.bin. NotFound for a missing file; DataLoss naming the file
// for a wrong magic or version, an unknown or float dtype, a truncated .idx, pointers past
// the end of .bin, or a doc_idx that is not non-decreasing from 0 to the sequence count;
// InvalidArgument for a .idx or .bin that is not a regular file; ResourceExhausted, naming
// the dataset and the sizes, when its tokens need more than `memory_limit` bytes of memory
// (by default the memory available now), checked before they are read.
absl::StatusOr<MegatronIndexedDataset> ReadMegatronIndexed(const std::string& path);
absl::StatusOr<MegatronIndexedDataset> ReadMegatronIndexed(const std::string& path,
                                                           uint64_t memory_limit);

// Writes documents (each one sequence) as PREFIX.idx / PREFIX.bin: for tests and converters.
absl::Status WriteMegatronIndexed(const std::string& prefix,
                                  const std::vector<std::vector<int32_t>>& documents,
                                  MegatronDtype dtype);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_DATA_MEGATRON_INDEXED_H_
