// Training checkpoints: per step a folder with one safetensors shard per stage (parameters
// and AdamW moments by parameter name) and a JSON manifest holding the step, the model and
// tokenizer, the launcher's run state and a CRC-32 per shard; written atomically.
// Not a training loop: tools/launch decides when to save and what the run state holds.
#ifndef STAGEHAND_RUNTIME_CHECKPOINT_CHECKPOINT_H_
#define STAGEHAND_RUNTIME_CHECKPOINT_CHECKPOINT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "models/gpt_config.h"
#include "nlohmann/json.hpp"
#include "runtime/data/tokenizer.h"
#include "runtime/train/training.h"

namespace stagehand::runtime {

// CRC-32 (IEEE 802.3, as zlib and `gzip` compute it), continuing from `crc`.
uint32_t Crc32(absl::string_view bytes, uint32_t crc = 0);

// The model's structure as JSON, and back (InvalidArgument naming a missing or bad field).
nlohmann::json GptConfigToJson(const models::GptConfig& config);
absl::StatusOr<models::GptConfig> GptConfigFromJson(const nlohmann::json& json);

struct CheckpointMeta {
  int64_t step = 0;  // steps completed; batches are a pure function of (seed, step)
  models::GptConfig model;
  TokenizerOptions tokenizer;
  nlohmann::json run = nlohmann::json::object();  // the launcher's: flags, seeds, loss history
};

// One chunk of the model and where its state lives. `optimizer` may be null (no moments).
struct ChunkState {
  Chunk* chunk = nullptr;
  OptimizerState* optimizer = nullptr;
  int stage = 0;
};

struct CheckpointInfo {
  std::string dir;  // ROOT/step_NNNNNNNN
  CheckpointMeta meta;
  std::vector<std::string> shards;  // absolute paths, checksums verified
};

// "step_00000042": a checkpoint's folder name under the root.
std::string CheckpointDirName(int64_t step);

// Writes ROOT/step_NNNNNNNN: every file under a temporary folder name, each written to a
// temporary name, fsync'ed and renamed, then the folder renamed into place (replacing an
// older one of the same step) and the root fsync'ed. Tied copies of a weight are stored
// once. Keeps the newest `keep_last` checkpoints (0: all). Returns the folder.
absl::StatusOr<std::string> WriteCheckpoint(const std::string& root, const CheckpointMeta& meta,
                                            const std::vector<ChunkState>& chunks,
                                            int keep_last = 0);

// The same in three parts, for checkpoints written by several processes (the cluster):
// one prepares the temporary folder, every process writes its stages' shards into it, and
// once all have, one commits (manifest, rename). Until the commit the folder is invisible
// to FindLatestCheckpoint, so a checkpoint is complete only when every part is written.
struct ShardRecord {
  std::string file;  // name inside the folder: stage_<S>.safetensors
  int stage = 0;
  uint64_t bytes = 0;
  uint32_t crc32 = 0;
};
// Creates ROOT/.step_NNNNNNNN.tmp empty (removing a stale one); returns it.
absl::StatusOr<std::string> BeginCheckpoint(const std::string& root, int64_t step);
// Writes one shard per stage of `chunks` into `tmp_dir` (fsync'ed); returns what it wrote.
absl::StatusOr<std::vector<ShardRecord>> WriteCheckpointShards(
    const std::string& tmp_dir, const std::vector<ChunkState>& chunks);
// Writes the manifest of `shards` (each stage once; every file present with its size) and
// moves the folder into place as WriteCheckpoint does. Returns the folder.
absl::StatusOr<std::string> CommitCheckpoint(const std::string& root, const CheckpointMeta& meta,
                                             const std::vector<ShardRecord>& shards,
                                             int keep_last = 0);

// Parses the manifest and checks every shard's size and CRC-32. DataLoss naming the file
// for a checksum mismatch, a truncated or missing shard, or a malformed manifest.
absl::StatusOr<CheckpointInfo> VerifyCheckpoint(const std::string& dir);

// The newest checkpoint under `root` that verifies. Each newer one that does not is
// skipped and reported in `skipped` ("step_00000006: ..."). NotFound when none verifies.
absl::StatusOr<CheckpointInfo> FindLatestCheckpoint(const std::string& root,
                                                    std::vector<std::string>* skipped);

// Sets every chunk's parameters (and, with `with_optimizer`, AdamW moments) from the
// checkpoint by parameter name, so any cut of the same model into chunks and stages
// loads it. InvalidArgument naming the tensor when the model and checkpoint differ.
absl::Status RestoreCheckpoint(const CheckpointInfo& info, const std::vector<ChunkState>& chunks,
                               bool with_optimizer);
// As RestoreCheckpoint for a part of the model (one process's chunks): tensors of chunks
// held elsewhere are left alone instead of being an error.
absl::Status RestoreCheckpointPart(const CheckpointInfo& info,
                                   const std::vector<ChunkState>& chunks, bool with_optimizer);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_CHECKPOINT_CHECKPOINT_H_
