// Checkpoint folders: atomic writes (temporary names, fsync, rename), CRC-32 verification,
// newest-valid selection, and restoring tensors by parameter name.
#include "runtime/checkpoint/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/match.h"
#include "runtime/io/atomic_file.h"
#include "runtime/io/safetensors.h"

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

const char* AttentionName(models::AttentionKind k) {
  return k == models::AttentionKind::kCausal ? "causal" : "none";
}
const char* MlpName(models::MlpKind k) { return k == models::MlpKind::kDense ? "dense" : "none"; }

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

nlohmann::json GptConfigToJson(const models::GptConfig& c) {
  nlohmann::json layers = nlohmann::json::array();
  for (const models::LayerSpec& l : c.layers) {
    layers.push_back({{"attention", AttentionName(l.attention)}, {"mlp", MlpName(l.mlp)}});
  }
  return {{"vocab_size", c.vocab_size}, {"max_seq_len", c.max_seq_len}, {"d_model", c.d_model},
          {"num_heads", c.num_heads},   {"seed", c.seed},               {"layers", layers}};
}

absl::StatusOr<models::GptConfig> GptConfigFromJson(const nlohmann::json& j) {
  models::GptConfig c;
  for (const char* field : {"vocab_size", "max_seq_len", "d_model", "num_heads", "seed"}) {
    if (!j.is_object() || !j.contains(field) || !j[field].is_number_integer()) {
      return absl::InvalidArgumentError(absl::StrCat("model config lacks integer field ", field));
    }
  }
  c.vocab_size = j["vocab_size"].get<int>();
  c.max_seq_len = j["max_seq_len"].get<int>();
  c.d_model = j["d_model"].get<int>();
  c.num_heads = j["num_heads"].get<int>();
  c.seed = j["seed"].get<uint64_t>();
  if (!j.contains("layers") || !j["layers"].is_array()) {
    return absl::InvalidArgumentError("model config lacks the layers array");
  }
  c.layers.clear();
  for (const nlohmann::json& l : j["layers"]) {
    const std::string attention = l.value("attention", ""), mlp = l.value("mlp", "");
    if ((attention != "causal" && attention != "none") || (mlp != "dense" && mlp != "none")) {
      return absl::InvalidArgumentError(absl::StrCat("bad layer spec ", l.dump()));
    }
    c.layers.push_back({attention == "causal" ? models::AttentionKind::kCausal : models::AttentionKind::kNone,
                        mlp == "dense" ? models::MlpKind::kDense : models::MlpKind::kNone});
  }
  if (absl::Status s = models::ValidateGptConfig(c); !s.ok()) return s;
  return c;
}

std::string CheckpointDirName(int64_t step) { return absl::StrFormat("step_%08d", step); }

absl::StatusOr<std::string> BeginCheckpoint(const std::string& root, int64_t step) {
  if (root.empty()) return absl::InvalidArgumentError("no checkpoint folder given");
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot create ", root, ": ", ec.message()));
  const std::string tmp_dir = root + "/." + CheckpointDirName(step) + ".tmp";
  fs::remove_all(tmp_dir, ec);
  if (!fs::create_directory(tmp_dir, ec) || ec) {
    return absl::PermissionDeniedError(absl::StrCat("cannot create ", tmp_dir, ": ", ec.message()));
  }
  return tmp_dir;
}

absl::StatusOr<std::vector<ShardRecord>> WriteCheckpointShards(const std::string& tmp_dir,
                                                               const std::vector<ChunkState>& chunks) {
  // One shard per stage: parameters, then their AdamW moments, by name.
  std::map<int, std::vector<const ChunkState*>> by_stage;
  for (const ChunkState& c : chunks) by_stage[c.stage].push_back(&c);
  std::vector<ShardRecord> records;
  for (const auto& [stage, held] : by_stage) {
    std::vector<NamedTensor> tensors;
    for (const ChunkState* c : held) {
      const models::ParameterSet<float>& p = c->chunk->params();
      const bool moments = c->optimizer != nullptr &&
                           static_cast<int64_t>(c->optimizer->m.size()) == p.size() &&
                           static_cast<int64_t>(c->optimizer->v.size()) == p.size();
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
    if (absl::Status s = WriteSafetensors(tmp_dir + "/" + file, tensors); !s.ok()) return s;
    absl::StatusOr<std::string> bytes = ReadAll(tmp_dir + "/" + file);  // what reached the disk
    if (!bytes.ok()) return bytes.status();
    records.push_back({file, stage, bytes->size(), Crc32(*bytes)});
  }
  return records;
}

absl::StatusOr<std::string> CommitCheckpoint(const std::string& root, const CheckpointMeta& meta,
                                             const std::vector<ShardRecord>& shards_written, int keep_last) {
  const std::string name = CheckpointDirName(meta.step);
  const std::string final_dir = root + "/" + name, tmp_dir = root + "/." + name + ".tmp";
  std::error_code ec;
  nlohmann::json shards = nlohmann::json::array();
  std::map<int, const ShardRecord*> by_stage;
  for (const ShardRecord& r : shards_written) {
    if (!by_stage.emplace(r.stage, &r).second) {
      return absl::InvalidArgumentError(absl::StrCat("checkpoint step ", meta.step, ": stage ", r.stage,
                                                     " has two shards"));
    }
    const uint64_t size = fs::file_size(tmp_dir + "/" + r.file, ec);
    if (ec || size != r.bytes) {
      return absl::DataLossError(absl::StrCat(tmp_dir, "/", r.file, ": ",
                                              ec ? "missing" : absl::StrCat(size, " bytes, not ", r.bytes)));
    }
  }
  for (const auto& [stage, r] : by_stage) {
    shards.push_back({{"file", r->file}, {"stage", stage}, {"bytes", r->bytes}, {"crc32", r->crc32}});
  }
  // The manifest, then the folder into place.
  nlohmann::json manifest = {{"format", kFormat},
                             {"version", kVersion},
                             {"step", meta.step},
                             {"model", GptConfigToJson(meta.model)},
                             {"tokenizer", {{"kind", meta.tokenizer.kind}, {"dir", meta.tokenizer.gpt2_dir}}},
                             {"run", meta.run},
                             {"shards", shards}};
  if (absl::Status s = WriteFileAtomically(tmp_dir + "/" + kManifest, manifest.dump(1)); !s.ok()) return s;
  if (absl::Status s = FsyncPath(tmp_dir); !s.ok()) return s;
  const std::string old_dir = root + "/." + name + ".old";
  fs::remove_all(old_dir, ec);
  if (fs::exists(final_dir)) fs::rename(final_dir, old_dir, ec);
  fs::rename(tmp_dir, final_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot rename ", tmp_dir, " to ", final_dir, ": ", ec.message()));
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

absl::StatusOr<CheckpointInfo> VerifyCheckpoint(const std::string& dir) {
  absl::StatusOr<std::string> text = ReadAll(dir + "/" + kManifest);
  if (!text.ok()) return absl::DataLossError(absl::StrCat(dir, ": no readable ", kManifest));
  nlohmann::json m = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  auto bad = [&](const std::string& what) {
    return absl::DataLossError(absl::StrCat(dir, "/", kManifest, ": ", what));
  };
  if (m.is_discarded() || !m.is_object()) return bad("not a JSON object (truncated?)");
  if (m.value("format", "") != kFormat || m.value("version", 0) != kVersion) {
    return bad(absl::StrCat("not a ", kFormat, " version ", kVersion));
  }
  if (!m.contains("step") || !m["step"].is_number_integer() || !m.contains("shards") ||
      !m["shards"].is_array() || !m.contains("model") || !m.contains("tokenizer") || !m.contains("run")) {
    return bad("lacks step, model, tokenizer, run or shards");
  }
  CheckpointInfo info;
  info.dir = dir;
  info.meta.step = m["step"].get<int64_t>();
  if (StepOfName(fs::path(dir).filename().string()) != info.meta.step) {
    return bad(absl::StrCat("holds step ", info.meta.step, ", not the folder's"));
  }
  absl::StatusOr<models::GptConfig> model = GptConfigFromJson(m["model"]);
  if (!model.ok()) return bad(std::string(model.status().message()));
  info.meta.model = *model;
  info.meta.tokenizer.kind = m["tokenizer"].value("kind", "byte");
  info.meta.tokenizer.gpt2_dir = m["tokenizer"].value("dir", "");
  info.meta.run = m["run"];
  for (const nlohmann::json& shard : m["shards"]) {
    if (!shard.is_object() || !shard.contains("file") || !shard["file"].is_string() ||
        !shard.contains("bytes") || !shard.contains("crc32")) {
      return bad(absl::StrCat("bad shard entry ", shard.dump()));
    }
    const std::string path = dir + "/" + shard["file"].get<std::string>();
    absl::StatusOr<std::string> bytes = ReadAll(path);
    if (!bytes.ok()) return absl::DataLossError(absl::StrCat(path, " is missing"));
    if (bytes->size() != shard["bytes"].get<uint64_t>()) {
      return absl::DataLossError(absl::StrCat(path, " has ", bytes->size(), " bytes, the manifest says ",
                                              shard["bytes"].get<uint64_t>(), " (truncated?)"));
    }
    const uint32_t crc = Crc32(*bytes);
    if (crc != shard["crc32"].get<uint32_t>()) {
      return absl::DataLossError(absl::StrFormat("%s: CRC-32 %08x does not match the manifest's %08x (corrupted)",
                                                 path, crc, shard["crc32"].get<uint32_t>()));
    }
    info.shards.push_back(path);
  }
  return info;
}

absl::StatusOr<CheckpointInfo> FindLatestCheckpoint(const std::string& root,
                                                    std::vector<std::string>* skipped) {
  for (const auto& [step, dir] : ListCheckpoints(root)) {
    absl::StatusOr<CheckpointInfo> info = VerifyCheckpoint(dir);
    if (info.ok()) return info;
    skipped->push_back(absl::StrCat(fs::path(dir).filename().string(), ": ", info.status().message()));
  }
  return absl::NotFoundError(absl::StrCat("no valid checkpoint in ", root,
                                          skipped->empty() ? "" : " (", absl::StrJoin(*skipped, "; "),
                                          skipped->empty() ? "" : ")"));
}

namespace {

absl::Status Restore(const CheckpointInfo& info, const std::vector<ChunkState>& chunks,
                     bool with_optimizer, bool whole_model) {
  std::map<std::string, NamedTensor> tensors;
  for (const std::string& path : info.shards) {
    absl::StatusOr<std::map<std::string, NamedTensor>> shard = ReadSafetensors(path);
    if (!shard.ok()) return shard.status();
    for (auto& [name, t] : *shard) tensors[name] = std::move(t);
  }
  absl::flat_hash_set<std::string> used;
  auto find = [&](const std::string& name, const models::ParamInfo& param) -> absl::StatusOr<const NamedTensor*> {
    auto it = tensors.find(name);
    if (it == tensors.end()) {
      return absl::InvalidArgumentError(absl::StrCat("checkpoint ", info.dir, " has no tensor ", name,
                                                     " (a different model?)"));
    }
    if (it->second.shape != param.shape) {
      return absl::InvalidArgumentError(absl::StrCat("checkpoint tensor ", name, " has shape [",
                                                     absl::StrJoin(it->second.shape, ", "),
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
    return absl::InvalidArgumentError(absl::StrCat("checkpoint tensor ", name,
                                                   " matches no parameter of the model (a different model?)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RestoreCheckpoint(const CheckpointInfo& info, const std::vector<ChunkState>& chunks,
                               bool with_optimizer) {
  return Restore(info, chunks, with_optimizer, /*whole_model=*/true);
}

absl::Status RestoreCheckpointPart(const CheckpointInfo& info, const std::vector<ChunkState>& chunks,
                                   bool with_optimizer) {
  return Restore(info, chunks, with_optimizer, /*whole_model=*/false);
}

}  // namespace stagehand::runtime
