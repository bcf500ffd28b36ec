// Checkpoint folders: atomic writes (temporary names, fsync, rename), CRC-32 verification,
// newest-valid selection, and restoring tensors by parameter name.
#include "runtime/checkpoint/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "models/model_config.h"
#include "runtime/io/atomic_file.h"
#include "runtime/io/safetensors.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {
namespace fs = std::filesystem;
namespace {

constexpr char kFormat[] = "stagehand-checkpoint";
constexpr int kVersion = 1;
constexpr char kManifest[] = "manifest.json";
constexpr char kMomentM[] = "optimizer.m.";
constexpr char kMomentV[] = "optimizer.v.";

absl::StatusOr<std::string> ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The step of a folder named step_NNNNNNNN, or -1.
int64_t StepOfName(const std::string& name) {
  int64_t step;
  if (!absl::StartsWith(name, "step_") || !absl::SimpleAtoi(name.substr(5), &step) || step < 0) {
    return -1;
  }
  return step;
}

// (step, folder) of every checkpoint folder under root, newest first.
std::vector<std::pair<int64_t, std::string>> ListCheckpoints(const std::string& root) {
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(root, ec)) {
    const int64_t step = StepOfName(e.path().filename().string());
    if (step >= 0 && e.is_directory()) out.emplace_back(step, e.path().string());
  }
  std::sort(out.rbegin(), out.rend());
  return out;
}

}  // namespace

uint32_t Crc32(absl::string_view bytes, uint32_t crc) {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (unsigned char b : bytes) crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

nlohmann::json GptConfigToJson(const models::GptConfig& c) { return models::ModelConfigToJson(c); }

absl::StatusOr<models::GptConfig> GptConfigFromJson(const nlohmann::json& j) {
  if (!j.is_object() || !j.contains("seed")) {
    return absl::InvalidArgumentError("model config lacks integer field seed");
  }
  return models::ModelConfigFromJson(j, "model config");
}

std::string CheckpointDirName(int64_t step) { return absl::StrFormat("step_%08d", step); }

absl::StatusOr<std::string> BeginCheckpoint(const std::string& root, int64_t step) {
  if (root.empty()) return absl::InvalidArgumentError("no checkpoint folder given");
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec)
    return absl::PermissionDeniedError(absl::StrCat("cannot create ", root, ": ", ec.message()));
  const std::string tmp_dir = root + "/." + CheckpointDirName(step) + ".tmp";
  fs::remove_all(tmp_dir, ec);
  if (!fs::create_directory(tmp_dir, ec) || ec) {
    return absl::PermissionDeniedError(absl::StrCat("cannot create ", tmp_dir, ": ", ec.message()));
  }
  return tmp_dir;
}

namespace {

// FailedPrecondition naming the first tensor of `tensors` holding a NaN or infinity.
absl::Status CheckFinite(const std::vector<NamedTensor>& tensors, int stage) {
  for (const NamedTensor& t : tensors) {
    for (size_t i = 0; i < t.data.size(); ++i) {
      if (!std::isfinite(t.data[i])) {
        return absl::FailedPreconditionError(
            absl::StrCat("not writing a checkpoint: ", t.name, " of stage ", stage,
                         " is not finite (", t.data[i], " at index ", i, "); the run diverged"));
      }
    }
  }
  return absl::OkStatus();
}

// FailedPrecondition unless every chunk of `chunks` either holds whole AdamW moments (m and
// v one float per parameter) or none yet (before the first step, or no optimizer), and all
// agree: a shard of moments (a ZeRO-1 or expert-parallel share that was not gathered) or a
// checkpoint with moments for only some chunks would be written and then fail to resume.
absl::Status CheckMoments(const std::vector<ChunkState>& chunks) {
  auto first = [](const ChunkState& c) {
    const auto& infos = c.chunk->params().infos();
    return infos.empty() ? std::string("no tensors") : infos.front().name;
  };
  const ChunkState* with = nullptr;
  const ChunkState* without = nullptr;
  for (const ChunkState& c : chunks) {
    const int64_t n = c.chunk->params().size();
    const int64_t m = c.optimizer != nullptr ? static_cast<int64_t>(c.optimizer->m.size()) : 0;
    const int64_t v = c.optimizer != nullptr ? static_cast<int64_t>(c.optimizer->v.size()) : 0;
    if ((m != 0 && m != n) || v != m) {
      return absl::FailedPreconditionError(absl::StrCat(
          "not writing a checkpoint: the AdamW moments of stage ", c.stage, "'s chunk (from ",
          first(c), ") hold ", m, " and ", v, " floats, not one per its ", n,
          " parameters (an optimizer shard that was not gathered?); it could not resume"));
    }
    (m == n ? with : without) = &c;
  }
  if (with != nullptr && without != nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("not writing a checkpoint: stage ", with->stage, "'s chunk (from ",
                     first(*with), ") has AdamW moments but stage ", without->stage, "'s (from ",
                     first(*without), ") has none; it could not resume"));
  }
  return absl::OkStatus();
}

// Bytes a checkpoint of `chunks` takes on disk, about: its tensors plus headers and manifest.
uint64_t CheckpointBytes(const std::vector<ChunkState>& chunks) {
  uint64_t bytes = 4096;
  for (const ChunkState& c : chunks) {
    const int copies = c.optimizer != nullptr && !c.optimizer->m.empty() ? 3 : 1;
    for (const models::ParamInfo& info : c.chunk->params().infos()) {
      if (!info.tied_copy) bytes += copies * (info.size * sizeof(float) + 128);
    }
  }
  return bytes;
}

// Removes a checkpoint's temporary folder after `failure`, so that a failed write (a full
// disk) leaves nothing behind; a full disk's message gets what a checkpoint needs.
absl::Status Abandon(const std::string& tmp_dir, absl::Status failure,
                     const std::vector<ChunkState>* chunks) {
  std::error_code ec;
  fs::remove_all(tmp_dir, ec);
  if (failure.code() == absl::StatusCode::kResourceExhausted && chunks != nullptr) {
    const uint64_t need = CheckpointBytes(*chunks);
    return absl::ResourceExhaustedError(absl::StrCat(
        failure.message(), "; the checkpoint needs about ", need, " bytes (", need >> 20,
        " MiB) for these stages; the partial checkpoint was removed, older checkpoints are "
        "untouched"));
  }
  return failure;
}

}  // namespace

absl::StatusOr<std::vector<ShardRecord>> WriteCheckpointShards(
    const std::string& tmp_dir, const std::vector<ChunkState>& chunks) {
  // One shard per stage: parameters, then their AdamW moments, by name.
  if (absl::Status s = CheckMoments(chunks); !s.ok()) return Abandon(tmp_dir, s, nullptr);
  std::map<int, std::vector<const ChunkState*>> by_stage;
  for (const ChunkState& c : chunks) by_stage[c.stage].push_back(&c);
  std::vector<ShardRecord> records;
  for (const auto& [stage, held] : by_stage) {
    std::vector<NamedTensor> tensors;
    for (const ChunkState* c : held) {
      const models::ParameterSet<float>& p = c->chunk->params();
      const bool moments = c->optimizer != nullptr && !c->optimizer->m.empty();  // CheckMoments
      for (const models::ParamInfo& info : p.infos()) {
        if (info.tied_copy) continue;
        auto slice = [&](const float* base) {
          return std::vector<float>(base + info.offset, base + info.offset + info.size);
        };
        tensors.push_back({info.name, info.shape, slice(p.values())});
        if (moments) {
          tensors.push_back({kMomentM + info.name, info.shape, slice(c->optimizer->m.data())});
          tensors.push_back({kMomentV + info.name, info.shape, slice(c->optimizer->v.data())});
        }
      }
    }
    const std::string file = absl::StrCat("stage_", stage, ".safetensors");
    if (absl::Status s = CheckFinite(tensors, stage); !s.ok()) return Abandon(tmp_dir, s, nullptr);
    if (absl::Status s = WriteSafetensors(tmp_dir + "/" + file, tensors); !s.ok()) {
      return Abandon(tmp_dir, s, &chunks);
    }
    absl::StatusOr<std::string> bytes = ReadAll(tmp_dir + "/" + file);  // what reached the disk
    if (!bytes.ok()) return bytes.status();
    records.push_back({file, stage, bytes->size(), Crc32(*bytes)});
  }
  return records;
}

absl::StatusOr<std::string> CommitCheckpoint(const std::string& root, const CheckpointMeta& meta,
                                             const std::vector<ShardRecord>& shards_written,
                                             int keep_last) {
  const std::string name = CheckpointDirName(meta.step);
  const std::string final_dir = root + "/" + name, tmp_dir = root + "/." + name + ".tmp";
  std::error_code ec;
  nlohmann::json shards = nlohmann::json::array();
  std::map<int, const ShardRecord*> by_stage;
  for (const ShardRecord& r : shards_written) {
    if (!by_stage.emplace(r.stage, &r).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("checkpoint step ", meta.step, ": stage ", r.stage, " has two shards"));
    }
    const uint64_t size = fs::file_size(tmp_dir + "/" + r.file, ec);
    if (ec || size != r.bytes) {
      return absl::DataLossError(
          absl::StrCat(tmp_dir, "/", r.file, ": ",
                       ec ? "missing" : absl::StrCat(size, " bytes, not ", r.bytes)));
    }
  }
  for (const auto& [stage, r] : by_stage) {
    shards.push_back(
        {{"file", r->file}, {"stage", stage}, {"bytes", r->bytes}, {"crc32", r->crc32}});
  }
  // The manifest, then the folder into place.
  nlohmann::json manifest = {
      {"format", kFormat},
      {"version", kVersion},
      {"step", meta.step},
      {"model", GptConfigToJson(meta.model)},
      {"tokenizer", {{"kind", meta.tokenizer.kind}, {"dir", meta.tokenizer.gpt2_dir}}},
      {"run", meta.run},
      {"shards", shards}};
  if (absl::Status s = WriteFileAtomically(tmp_dir + "/" + kManifest, manifest.dump(1)); !s.ok()) {
    return Abandon(tmp_dir, s, nullptr);
  }
  if (absl::Status s = FsyncPath(tmp_dir); !s.ok()) return s;
  const std::string old_dir = root + "/." + name + ".old";
  fs::remove_all(old_dir, ec);
  if (fs::exists(final_dir)) fs::rename(final_dir, old_dir, ec);
  fs::rename(tmp_dir, final_dir, ec);
  if (ec)
    return absl::InternalError(
        absl::StrCat("cannot rename ", tmp_dir, " to ", final_dir, ": ", ec.message()));
  fs::remove_all(old_dir, ec);
  if (absl::Status s = FsyncPath(root); !s.ok()) return s;
  // Older checkpoints beyond keep_last.
  if (keep_last > 0) {
    std::vector<std::pair<int64_t, std::string>> all = ListCheckpoints(root);
    for (size_t i = keep_last; i < all.size(); ++i) fs::remove_all(all[i].second, ec);
  }
  return final_dir;
}

absl::StatusOr<std::string> WriteCheckpoint(const std::string& root, const CheckpointMeta& meta,
                                            const std::vector<ChunkState>& chunks, int keep_last) {
  absl::StatusOr<std::string> tmp_dir = BeginCheckpoint(root, meta.step);
  if (!tmp_dir.ok()) return tmp_dir.status();
  absl::StatusOr<std::vector<ShardRecord>> shards = WriteCheckpointShards(*tmp_dir, chunks);
  if (!shards.ok()) return shards.status();
  return CommitCheckpoint(root, meta, *shards, keep_last);
}

namespace {

// Typed access to a manifest's fields: every error names the manifest and the field.
class ManifestReader {
 public:
  explicit ManifestReader(std::string file) : file_(std::move(file)) {}
  absl::Status Bad(absl::string_view field, absl::string_view what) const {
    return absl::DataLossError(absl::StrCat(file_, ": ", field, " ", what));
  }
  absl::StatusOr<const nlohmann::json*> Field(const nlohmann::json& obj, const char* key,
                                              absl::string_view path) const {
    const auto it = obj.find(key);
    if (it == obj.end()) return Bad(path, "is missing");
    return &*it;
  }
  absl::StatusOr<std::string> String(const nlohmann::json& obj, const char* key,
                                     absl::string_view path, const char* fallback = nullptr) const {
    if (fallback != nullptr && !obj.contains(key)) return std::string(fallback);
    ASSIGN_OR_RETURN(const nlohmann::json* v, Field(obj, key, path));
    if (!v->is_string()) return Bad(path, absl::StrCat("is ", v->dump(), ", not a string"));
    return v->get<std::string>();
  }
  // A non-negative integer no larger than `max` (JSON floats are refused, not converted).
  absl::StatusOr<uint64_t> Unsigned(const nlohmann::json& obj, const char* key,
                                    absl::string_view path, uint64_t max) const {
    ASSIGN_OR_RETURN(const nlohmann::json* v, Field(obj, key, path));
    if (!v->is_number_unsigned() || v->get<uint64_t>() > max) {
      return Bad(path, absl::StrCat("is ", v->dump(), ", not an integer in [0, ", max, "]"));
    }
    return v->get<uint64_t>();
  }

 private:
  std::string file_;
};

// A shard's file name: a plain name inside the checkpoint folder, never a path out of it.
bool IsPlainName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

absl::Status VerifyShard(const ManifestReader& r, const std::string& dir,
                         const nlohmann::json& shard, size_t i, CheckpointInfo* info) {
  const std::string where = absl::StrCat("shards[", i, "]");
  if (!shard.is_object()) return r.Bad(where, "is not an object");
  ASSIGN_OR_RETURN(const std::string file, r.String(shard, "file", where + ".file"));
  if (!IsPlainName(file)) {
    return r.Bad(where + ".file",
                 absl::StrCat("'", file, "' is not a file name inside the checkpoint folder"));
  }
  ASSIGN_OR_RETURN(const uint64_t bytes,
                   r.Unsigned(shard, "bytes", where + ".bytes", uint64_t{1} << 50));
  ASSIGN_OR_RETURN(const uint64_t crc32, r.Unsigned(shard, "crc32", where + ".crc32", 0xFFFFFFFFu));
  const std::string path = dir + "/" + file;
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return absl::DataLossError(absl::StrCat(path, " is missing"));
  const uint64_t size = fs::file_size(path, ec);
  if (ec || size != bytes) {  // checked before reading: the manifest bounds what we read
    return absl::DataLossError(
        absl::StrCat(path, " has ", size, " bytes, the manifest says ", bytes, " (truncated?)"));
  }
  ASSIGN_OR_RETURN(const std::string contents, ReadAll(path));
  const uint32_t crc = Crc32(contents);
  if (contents.size() != bytes || crc != crc32) {
    return absl::DataLossError(absl::StrFormat(
        "%s: CRC-32 %08x does not match the manifest's %08x (corrupted)", path, crc, crc32));
  }
  info->shards.push_back(path);
  return absl::OkStatus();
}

absl::StatusOr<CheckpointInfo> VerifyManifest(const std::string& dir, const nlohmann::json& m) {
  const ManifestReader r(absl::StrCat(dir, "/", kManifest));
  if (!m.is_object()) return r.Bad("the manifest", "is not a JSON object (truncated?)");
  ASSIGN_OR_RETURN(const std::string format, r.String(m, "format", "format"));
  if (format != kFormat) return r.Bad("format", absl::StrCat("is '", format, "', not ", kFormat));
  ASSIGN_OR_RETURN(const uint64_t version, r.Unsigned(m, "version", "version", 1 << 20));
  if (version != kVersion) return r.Bad("version", absl::StrCat(version, " is not ", kVersion));
  CheckpointInfo info;
  info.dir = dir;
  ASSIGN_OR_RETURN(const uint64_t step, r.Unsigned(m, "step", "step", uint64_t{1} << 62));
  info.meta.step = static_cast<int64_t>(step);
  if (StepOfName(fs::path(dir).filename().string()) != info.meta.step) {
    return r.Bad("step", absl::StrCat(step, " is not the folder's"));
  }
  ASSIGN_OR_RETURN(const nlohmann::json* model, r.Field(m, "model", "model"));
  absl::StatusOr<models::GptConfig> config = GptConfigFromJson(*model);
  if (!config.ok()) return r.Bad("model", config.status().message());
  info.meta.model = *config;
  ASSIGN_OR_RETURN(const nlohmann::json* tokenizer, r.Field(m, "tokenizer", "tokenizer"));
  if (!tokenizer->is_object()) return r.Bad("tokenizer", "is not an object");
  ASSIGN_OR_RETURN(info.meta.tokenizer.kind,
                   r.String(*tokenizer, "kind", "tokenizer.kind", "byte"));
  ASSIGN_OR_RETURN(info.meta.tokenizer.gpt2_dir, r.String(*tokenizer, "dir", "tokenizer.dir", ""));
  ASSIGN_OR_RETURN(const nlohmann::json* run, r.Field(m, "run", "run"));
  if (!run->is_object()) return r.Bad("run", "is not an object");
  info.meta.run = *run;
  ASSIGN_OR_RETURN(const nlohmann::json* shards, r.Field(m, "shards", "shards"));
  if (!shards->is_array()) return r.Bad("shards", "is not an array");
  for (size_t i = 0; i < shards->size(); ++i)
    RETURN_IF_ERROR(VerifyShard(r, dir, (*shards)[i], i, &info));
  return info;
}

}  // namespace

absl::StatusOr<CheckpointInfo> VerifyCheckpoint(const std::string& dir) {
  std::error_code ec;
  constexpr uintmax_t kMaxManifestBytes = 64 << 20;
  if (!fs::is_regular_file(dir + "/" + kManifest, ec) ||
      fs::file_size(dir + "/" + kManifest, ec) > kMaxManifestBytes) {
    return absl::DataLossError(absl::StrCat(dir, "/", kManifest, ": missing, not a file or over ",
                                            kMaxManifestBytes, " bytes"));
  }
  absl::StatusOr<std::string> text = ReadAll(dir + "/" + kManifest);
  if (!text.ok()) return absl::DataLossError(absl::StrCat(dir, ": no readable ", kManifest));
  const nlohmann::json m = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (m.is_discarded()) {
    return absl::DataLossError(
        absl::StrCat(dir, "/", kManifest, ": not a JSON object (truncated?)"));
  }
  return VerifyManifest(dir, m);
}

absl::StatusOr<CheckpointInfo> FindLatestCheckpoint(const std::string& root,
                                                    std::vector<std::string>* skipped) {
  for (const auto& [step, dir] : ListCheckpoints(root)) {
    absl::StatusOr<CheckpointInfo> info = VerifyCheckpoint(dir);
    if (info.ok()) return info;
    skipped->push_back(
        absl::StrCat(fs::path(dir).filename().string(), ": ", info.status().message()));
  }
  return absl::NotFoundError(
      absl::StrCat("no valid checkpoint in ", root, skipped->empty() ? "" : " (",
                   absl::StrJoin(*skipped, "; "), skipped->empty() ? "" : ")"));
}

namespace {

absl::Status Restore(const CheckpointInfo& info, const std::vector<ChunkState>& chunks,
                     bool with_optimizer, bool whole_model) {
  std::map<std::string, NamedTensor> tensors;
  for (const std::string& path : info.shards) {
    absl::StatusOr<std::map<std::string, NamedTensor>> shard = ReadSafetensors(path);
    if (!shard.ok()) return shard.status();
    for (auto& [name, t] : *shard) {
      for (float x : t.data) {
        if (!std::isfinite(x)) {
          return absl::DataLossError(absl::StrCat(path, ": tensor ", name, " holds ", x,
                                                  ", not finite; refusing to train from it"));
        }
      }
      tensors[name] = std::move(t);
    }
  }
  absl::flat_hash_set<std::string> used;
  auto find = [&](const std::string& name,
                  const models::ParamInfo& param) -> absl::StatusOr<const NamedTensor*> {
    auto it = tensors.find(name);
    if (it == tensors.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("checkpoint ", info.dir, " has no tensor ", name, " (a different model?)"));
    }
    if (it->second.shape != param.shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          "checkpoint tensor ", name, " has shape [", absl::StrJoin(it->second.shape, ", "),
          "] but the model's is [", absl::StrJoin(param.shape, ", "), "]"));
    }
    used.insert(name);
    return &it->second;
  };
  for (const ChunkState& c : chunks) {
    models::ParameterSet<float>& p = c.chunk->params();
    const bool moments = with_optimizer && c.optimizer != nullptr;
    if (moments) {
      c.optimizer->m.assign(p.size(), 0.f);
      c.optimizer->v.assign(p.size(), 0.f);
    }
    for (const models::ParamInfo& param : p.infos()) {
      absl::StatusOr<const NamedTensor*> value = find(param.name, param);
      if (!value.ok()) return value.status();
      std::copy((*value)->data.begin(), (*value)->data.end(), p.values() + param.offset);
      if (!moments) continue;
      absl::StatusOr<const NamedTensor*> m = find(kMomentM + param.name, param);
      if (!m.ok()) return m.status();
      absl::StatusOr<const NamedTensor*> v = find(kMomentV + param.name, param);
      if (!v.ok()) return v.status();
      std::copy((*m)->data.begin(), (*m)->data.end(), c.optimizer->m.begin() + param.offset);
      std::copy((*v)->data.begin(), (*v)->data.end(), c.optimizer->v.begin() + param.offset);
    }
  }
  if (!whole_model) return absl::OkStatus();
  for (const auto& [name, t] : tensors) {
    if (used.contains(name) || (!with_optimizer && absl::StartsWith(name, "optimizer."))) continue;
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint tensor ", name, " matches no parameter of the model (a different model?)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RestoreCheckpoint(const CheckpointInfo& info, const std::vector<ChunkState>& chunks,
                               bool with_optimizer) {
  return Restore(info, chunks, with_optimizer, /*whole_model=*/true);
}

absl::Status RestoreCheckpointPart(const CheckpointInfo& info,
                                   const std::vector<ChunkState>& chunks, bool with_optimizer) {
  return Restore(info, chunks, with_optimizer, /*whole_model=*/false);
}

}  // namespace stagehand::runtime
