// Tests for checkpoints: CRC-32, config JSON, bitwise-identical resumed training, loading
// under another cut, corruption fallback, pruning and model mismatches.
#include "runtime/checkpoint/checkpoint.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/io/tiny_disk_for_test.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::runtime {
namespace {
namespace fs = std::filesystem;
using ::stagehand::testing::IsOk;
using ::stagehand::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

std::string TempRoot(const std::string& name) {
  const std::string root = ::testing::TempDir() + "/" + name;
  fs::remove_all(root);
  return root;
}

const std::vector<int32_t>& Data() {
  static const std::vector<int32_t> data = [] {
    std::string s;
    for (int i = 0; i < 100; ++i) s += "a stitch in time saves nine; ";
    return std::vector<int32_t>(s.begin(), s.end());
  }();
  return data;
}

models::GptConfig Config(uint64_t seed = 11) { return models::UniformGpt(3, 16, 2, 256, 16, seed); }

// Config() with an MoE middle layer: 3 experts, top-2, capacity 1.5, a shared expert.
models::GptConfig MoeConfig(uint64_t seed = 11) {
  models::GptConfig c = Config(seed);
  c.layers[1].mlp = models::MlpKind::kMoe;
  c.layers[1].moe = models::MoeSpec{3, 2, 20, 12, 1.5, 0.01, 0.001};
  return c;
}

struct TrainingRun {
  std::vector<std::unique_ptr<Chunk>> owned;
  std::vector<Chunk*> chunks;
  std::vector<OptimizerState> states;
  std::vector<double> losses;
};

TrainingRun Build(int num_chunks, uint64_t seed = 11, bool moe = false) {
  TrainingRun r;
  auto built =
      BuildChunks(moe ? MoeConfig(seed) : Config(seed), num_chunks, models::ChunkOptions{2, 16, 2});
  EXPECT_TRUE(built.ok()) << built.status();
  r.owned = std::move(*built);
  for (auto& c : r.owned) r.chunks.push_back(c.get());
  r.states.resize(num_chunks);
  return r;
}

void TrainSteps(TrainingRun& r, int64_t first, int64_t last) {
  WindowSampler sampler(&Data(), 2, 16, 5);
  OptimizerConfig opt;
  opt.adamw.learning_rate = 3e-3;
  opt.adamw.weight_decay = 0.1;
  opt.schedule = LearningRateSchedule{2, 6, 0.1};
  for (int64_t step = first; step <= last; ++step) {
    absl::StatusOr<double> loss = SequentialForwardBackward(r.chunks, sampler, step, 2);
    ASSERT_TRUE(loss.ok()) << loss.status();
    r.losses.push_back(*loss);
    OptimizerStep(r.chunks, r.states, opt, static_cast<int>(step));
  }
}

// Chunk k of `r` on stage stage_of[k].
std::vector<ChunkState> States(TrainingRun& r, const std::vector<int>& stage_of) {
  std::vector<ChunkState> out;
  for (size_t k = 0; k < r.chunks.size(); ++k)
    out.push_back({r.chunks[k], &r.states[k], stage_of[k]});
  return out;
}

CheckpointMeta Meta(int64_t step) {
  CheckpointMeta m;
  m.step = step;
  m.model = Config();
  m.run = {{"note", "test"}};
  return m;
}

// name -> m values, over every chunk (tied copies once).
std::map<std::string, std::vector<float>> Moments(TrainingRun& r) {
  std::map<std::string, std::vector<float>> out;
  for (size_t k = 0; k < r.chunks.size(); ++k) {
    for (const models::ParamInfo& info : r.chunks[k]->params().infos()) {
      if (info.tied_copy) continue;
      const float* m = r.states[k].m.data() + info.offset;
      out[info.name].assign(m, m + info.size);
    }
  }
  return out;
}

TEST(Crc32Test, MatchesTheStandardCheckValue) {
  EXPECT_EQ(Crc32("123456789"), 0xCBF43926u);
  EXPECT_EQ(Crc32("56789", Crc32("1234")), 0xCBF43926u);
  EXPECT_EQ(Crc32(""), 0u);
}

TEST(GptConfigJsonTest, RoundTripsHeterogeneousLayers) {
  models::GptConfig c = Config(1ull << 60);
  c.layers[1].attention = models::AttentionKind::kNone;
  c.layers[2].mlp = models::MlpKind::kNone;
  absl::StatusOr<models::GptConfig> back = GptConfigFromJson(GptConfigToJson(c));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(GptConfigToJson(*back), GptConfigToJson(c));
  nlohmann::json broken = GptConfigToJson(c);
  broken.erase("d_model");
  EXPECT_NE(GptConfigFromJson(broken).status().message().find("d_model"), std::string::npos);
}

TEST(CheckpointTest, ResumedTrainingIsBitwiseIdenticalToAnUninterruptedRun) {
  TrainingRun whole = Build(3);
  TrainSteps(whole, 1, 6);
  const std::string root = TempRoot("resume");
  TrainingRun first = Build(3);
  TrainSteps(first, 1, 3);
  ASSERT_TRUE(WriteCheckpoint(root, Meta(3), States(first, {0, 0, 1})).ok());
  TrainingRun resumed =
      Build(3, /*seed=*/999);  // other initial weights: everything must come from the checkpoint
  std::vector<std::string> skipped;
  absl::StatusOr<CheckpointInfo> info = FindLatestCheckpoint(root, &skipped);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->meta.step, 3);
  EXPECT_EQ(info->meta.run["note"], "test");
  EXPECT_EQ(info->shards.size(), 2u);
  ASSERT_TRUE(RestoreCheckpoint(*info, States(resumed, {0, 1, 2}), /*with_optimizer=*/true).ok());
  TrainSteps(resumed, 4, 6);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(resumed.losses[i], whole.losses[3 + i]) << "step " << 4 + i;
  std::vector<NamedTensor> a = CollectParameters(whole.chunks),
                           b = CollectParameters(resumed.chunks);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].name, b[i].name);
    EXPECT_EQ(0, std::memcmp(a[i].data.data(), b[i].data.data(), a[i].data.size() * sizeof(float)))
        << a[i].name;
  }
  EXPECT_EQ(Moments(whole), Moments(resumed));
}

TEST(CheckpointTest, LoadsUnderADifferentNumberOfChunksAndStages) {
  TrainingRun trained = Build(3);
  TrainSteps(trained, 1, 2);
  const std::string root = TempRoot("recut");
  absl::StatusOr<std::string> dir = WriteCheckpoint(root, Meta(2), States(trained, {0, 1, 2}));
  ASSERT_TRUE(dir.ok()) << dir.status();
  absl::StatusOr<CheckpointInfo> info = VerifyCheckpoint(*dir);
  ASSERT_TRUE(info.ok()) << info.status();
  for (int chunks : {1, 2}) {
    TrainingRun other = Build(chunks, 77);
    std::vector<int> stages(chunks, 0);
    ASSERT_TRUE(RestoreCheckpoint(*info, States(other, stages), true).ok());
    std::vector<NamedTensor> a = CollectParameters(trained.chunks),
                             b = CollectParameters(other.chunks);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].data, b[i].data) << a[i].name;
    EXPECT_EQ(Moments(trained), Moments(other));
  }
}

TEST(CheckpointTest, MoeParametersAndMomentsRoundTripUnderAnotherCut) {
  TrainingRun trained = Build(3, 11, /*moe=*/true);
  TrainSteps(trained, 1, 2);
  const std::string root = TempRoot("moe");
  CheckpointMeta meta = Meta(2);
  meta.model = MoeConfig();
  absl::StatusOr<std::string> dir = WriteCheckpoint(root, meta, States(trained, {0, 1, 1}));
  ASSERT_TRUE(dir.ok()) << dir.status();
  absl::StatusOr<CheckpointInfo> info = VerifyCheckpoint(*dir);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(GptConfigToJson(info->meta.model), GptConfigToJson(MoeConfig()));
  TrainingRun other = Build(1, 77, /*moe=*/true);
  ASSERT_TRUE(RestoreCheckpoint(*info, States(other, {0}), true).ok());
  std::vector<NamedTensor> a = CollectParameters(trained.chunks),
                           b = CollectParameters(other.chunks);
  ASSERT_EQ(a.size(), b.size());
  bool saw_expert = false;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].data, b[i].data) << a[i].name;
    saw_expert = saw_expert || a[i].name == "h.1.mlp.experts.2.c_proj.weight";
  }
  EXPECT_TRUE(saw_expert);
  EXPECT_EQ(Moments(trained), Moments(other));
}

TEST(CheckpointTest, CorruptedOrTruncatedNewestFallsBackToThePreviousOne) {
  TrainingRun r = Build(2);
  const std::string root = TempRoot("corrupt");
  for (int64_t step : {2, 4, 6}) {
    TrainSteps(r, step - 1, step);
    ASSERT_TRUE(WriteCheckpoint(root, Meta(step), States(r, {0, 1})).ok());
  }
  fs::create_directories(root + "/.step_00000008.tmp");  // a crash mid-write leaves this
  const std::string shard6 = root + "/step_00000006/stage_1.safetensors";
  {
    std::fstream f(shard6, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(shard6) / 2));
    f.put('\x5A');
  }
  fs::resize_file(root + "/step_00000004/stage_0.safetensors",
                  fs::file_size(root + "/step_00000004/stage_0.safetensors") - 100);
  std::vector<std::string> skipped;
  absl::StatusOr<CheckpointInfo> info = FindLatestCheckpoint(root, &skipped);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->meta.step, 2);
  ASSERT_EQ(skipped.size(), 2u);
  EXPECT_NE(skipped[0].find("step_00000006: "), std::string::npos) << skipped[0];
  EXPECT_NE(skipped[0].find("CRC-32"), std::string::npos) << skipped[0];
  EXPECT_NE(skipped[1].find("step_00000004: "), std::string::npos) << skipped[1];
  EXPECT_NE(skipped[1].find("truncated"), std::string::npos) << skipped[1];
  std::ofstream(root + "/step_00000002/manifest.json") << "{\"format\": \"stagehand-chec";
  skipped.clear();
  absl::Status none = FindLatestCheckpoint(root, &skipped).status();
  EXPECT_EQ(none.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(none.message().find("not a JSON object"), std::string::npos) << none;
}

TEST(CheckpointTest, KeepsTheNewestAndReplacesASameStepFolder) {
  TrainingRun r = Build(1);
  const std::string root = TempRoot("keep");
  for (int64_t step : {1, 2, 3, 3})
    ASSERT_TRUE(WriteCheckpoint(root, Meta(step), States(r, {0}), 2).ok());
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(root)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"step_00000002", "step_00000003"}));
}

TEST(CheckpointTest, PartsWrittenSeparatelyCommitToTheSameFilesAsOneWriter) {
  TrainingRun r = Build(3);
  TrainSteps(r, 1, 2);
  const std::string whole_root = TempRoot("parts_whole"), root = TempRoot("parts");
  std::vector<ChunkState> all = States(r, {0, 1, 2});
  ASSERT_TRUE(WriteCheckpoint(whole_root, Meta(2), all).ok());
  absl::StatusOr<std::string> tmp = BeginCheckpoint(root, 2);
  ASSERT_TRUE(tmp.ok()) << tmp.status();
  std::vector<ShardRecord> records;
  for (const ChunkState& part : all) {  // one "process" per stage
    absl::StatusOr<std::vector<ShardRecord>> written = WriteCheckpointShards(*tmp, {part});
    ASSERT_TRUE(written.ok()) << written.status();
    std::vector<std::string> skipped;  // not visible before the commit
    EXPECT_EQ(FindLatestCheckpoint(root, &skipped).status().code(), absl::StatusCode::kNotFound);
    records.insert(records.end(), written->begin(), written->end());
  }
  absl::StatusOr<std::string> dir = CommitCheckpoint(root, Meta(2), records);
  ASSERT_TRUE(dir.ok()) << dir.status();
  for (const char* file :
       {"manifest.json", "stage_0.safetensors", "stage_1.safetensors", "stage_2.safetensors"}) {
    std::ifstream a(whole_root + "/step_00000002/" + file, std::ios::binary),
        b(*dir + "/" + file, std::ios::binary);
    EXPECT_EQ(std::string(std::istreambuf_iterator<char>(a), {}),
              std::string(std::istreambuf_iterator<char>(b), {}))
        << file;
  }
  // A part restores one process's chunks; the whole-model restore refuses the same subset.
  TrainingRun other = Build(3, 99);
  absl::StatusOr<CheckpointInfo> info = VerifyCheckpoint(*dir);
  ASSERT_TRUE(info.ok()) << info.status();
  std::vector<ChunkState> middle = {States(other, {0, 1, 2})[1]};
  EXPECT_FALSE(RestoreCheckpoint(*info, middle, true).ok());
  ASSERT_TRUE(RestoreCheckpointPart(*info, middle, true).ok());
  EXPECT_EQ(other.states[1].m, r.states[1].m);
  EXPECT_EQ(CollectParameters({other.chunks[1]})[0].data, CollectParameters({r.chunks[1]})[0].data);
  // A shard the commit was told about but that is missing or shorter is refused.
  records.push_back({"stage_7.safetensors", 7, 10, 0});
  ASSERT_TRUE(BeginCheckpoint(root, 4).ok());
  EXPECT_EQ(CommitCheckpoint(root, Meta(4), {records.back()}).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(CheckpointTest, RestoringIntoAnotherModelNamesTheTensor) {
  TrainingRun r = Build(1);
  const std::string root = TempRoot("mismatch");
  absl::StatusOr<std::string> dir = WriteCheckpoint(root, Meta(1), States(r, {0}));
  ASSERT_TRUE(dir.ok());
  auto wider =
      BuildChunks(models::UniformGpt(3, 32, 2, 256, 16, 1), 1, models::ChunkOptions{2, 16, 2});
  ASSERT_TRUE(wider.ok());
  OptimizerState st;
  absl::Status s = RestoreCheckpoint(*VerifyCheckpoint(*dir), {{(*wider)[0].get(), &st, 0}}, true);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("has shape"), std::string::npos) << s;
  auto deeper =
      BuildChunks(models::UniformGpt(4, 16, 2, 256, 16, 1), 1, models::ChunkOptions{2, 16, 2});
  s = RestoreCheckpoint(*VerifyCheckpoint(*dir), {{(*deeper)[0].get(), nullptr, 0}}, false);
  EXPECT_NE(s.message().find("no tensor h.3."), std::string::npos) << s;
}

// Writes a checkpoint of `r` at `step` under `root`; returns its folder.
std::string WriteOne(TrainingRun& r, const std::string& root, int64_t step) {
  absl::StatusOr<std::string> dir = WriteCheckpoint(root, Meta(step), States(r, {0}));
  EXPECT_THAT(dir, IsOk());
  return dir.ok() ? *dir : "";
}

// Rewrites the manifest of `dir` by `edit`.
void EditManifest(const std::string& dir, const std::function<void(nlohmann::json&)>& edit) {
  std::ifstream in(dir + "/manifest.json");
  nlohmann::json m = nlohmann::json::parse(in);
  edit(m);
  std::ofstream(dir + "/manifest.json", std::ios::trunc) << m.dump();
}

TEST(CheckpointManifestTest, WrongJsonTypesAreDataLossNamingTheFileAndField) {
  TrainingRun r = Build(1);
  const std::string root = TempRoot("manifest_types");
  const std::string dir = WriteOne(r, root, 1);
  const std::vector<std::pair<std::string, std::function<void(nlohmann::json&)>>> edits = {
      {"format", [](nlohmann::json& m) { m["format"] = 1; }},
      {"version", [](nlohmann::json& m) { m["version"] = "1"; }},
      {"version", [](nlohmann::json& m) { m["version"] = 1e300; }},
      {"run", [](nlohmann::json& m) { m["run"] = nlohmann::json::array(); }},
      {"tokenizer", [](nlohmann::json& m) { m["tokenizer"] = 7; }},
      {"tokenizer.kind", [](nlohmann::json& m) { m["tokenizer"]["kind"] = 7; }},
      {"model", [](nlohmann::json& m) { m["model"]["layers"] = {3}; }},
      {"crc32", [](nlohmann::json& m) { m["shards"][0]["crc32"] = 1e300; }},
      {"crc32", [](nlohmann::json& m) { m["shards"][0]["crc32"] = -1; }},
      {"bytes", [](nlohmann::json& m) { m["shards"][0]["bytes"] = "many"; }},
      {"shards", [](nlohmann::json& m) { m["shards"] = {nlohmann::json::array()}; }},
  };
  for (const auto& [field, edit] : edits) {
    const std::string copy = root + "/step_00000002";
    fs::remove_all(copy);
    fs::copy(dir, copy);
    EditManifest(copy, [&](nlohmann::json& m) {
      m["step"] = 2;
      edit(m);
    });
    absl::StatusOr<CheckpointInfo> info = VerifyCheckpoint(copy);
    EXPECT_THAT(info, StatusIs(absl::StatusCode::kDataLoss,
                               AllOf(HasSubstr(copy + "/manifest.json"), HasSubstr(field))));
  }
}

TEST(CheckpointManifestTest, ABadNewestManifestDoesNotHideOlderGoodCheckpoints) {
  TrainingRun r = Build(1);
  const std::string root = TempRoot("manifest_newest");
  WriteOne(r, root, 1);
  EditManifest(WriteOne(r, root, 2), [](nlohmann::json& m) { m["format"] = 1; });
  std::vector<std::string> skipped;
  absl::StatusOr<CheckpointInfo> info = FindLatestCheckpoint(root, &skipped);
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->meta.step, 1);
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_THAT(skipped[0], HasSubstr("format"));
}

TEST(CheckpointManifestTest, AShardOutsideTheFolderIsRefusedWithoutReadingIt) {
  TrainingRun r = Build(1);
  const std::string root = TempRoot("manifest_escape");
  const std::string dir = WriteOne(r, root, 1);
  for (const char* file : {"../../dev/zero", "/dev/zero", "..", "sub/stage_0.safetensors"}) {
    EditManifest(dir, [&](nlohmann::json& m) { m["shards"][0]["file"] = file; });
    EXPECT_THAT(VerifyCheckpoint(dir),
                StatusIs(absl::StatusCode::kDataLoss, AllOf(HasSubstr(file), HasSubstr("inside"))));
  }
}

TEST(CheckpointManifestTest, AnAbsurdModelSizeIsRefusedBeforeAllocating) {
  TrainingRun r = Build(1);
  const std::string dir = WriteOne(r, TempRoot("manifest_huge"), 1);
  EditManifest(dir, [](nlohmann::json& m) {
    m["model"]["d_model"] = 1000000;
    m["model"]["num_heads"] = 1;
  });
  EXPECT_THAT(VerifyCheckpoint(dir), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("d_model")));
}

TEST(CheckpointTest, NonFiniteParametersAreNeverWritten) {
  TrainingRun r = Build(1);
  const std::string root = TempRoot("nan_write");
  r.chunks[0]->params().values()[3] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THAT(WriteCheckpoint(root, Meta(1), States(r, {0})),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not finite")));
  std::vector<std::string> skipped;
  EXPECT_THAT(FindLatestCheckpoint(root, &skipped), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_FALSE(fs::exists(root + "/.step_00000001.tmp"));
}

// Moments that could not resume are refused when written, not found missing at the resume: a
// shard of them (a ZeRO-1 share never gathered), or moments for only some chunks. Moments for
// none (before the first step) are written without them, as before.
TEST(CheckpointTest, PartialMomentsAreNeverWritten) {
  TrainingRun fresh = Build(2);
  ASSERT_TRUE(WriteCheckpoint(TempRoot("no_moments"), Meta(0), States(fresh, {0, 1})).ok());
  TrainingRun r = Build(2);
  TrainSteps(r, 1, 1);
  const std::string root = TempRoot("partial_moments");
  const std::vector<float> whole_m = r.states[1].m;
  r.states[1].m.resize(whole_m.size() / 2);  // one of two replicas' shares
  EXPECT_THAT(WriteCheckpoint(root, Meta(1), States(r, {0, 1})),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(absl::StrCat(
                           "stage 1's chunk (from ", r.chunks[1]->params().infos().front().name,
                           ") hold ", whole_m.size() / 2, " and ", whole_m.size(), " floats"))));
  r.states[1].m.clear();  // only chunk 0 has moments
  r.states[1].v.clear();
  EXPECT_THAT(WriteCheckpoint(root, Meta(1), States(r, {0, 1})),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("stage 0's chunk (from wte) has AdamW moments but stage 1's")));
  std::vector<std::string> skipped;
  EXPECT_THAT(FindLatestCheckpoint(root, &skipped), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_FALSE(fs::exists(root + "/.step_00000001.tmp"));
}

TEST(CheckpointTest, NonFiniteWeightsInACheckpointAreRefusedOnRestore) {
  TrainingRun r = Build(1);
  const std::string dir = WriteOne(r, TempRoot("nan_read"), 1);
  const std::string shard = dir + "/stage_0.safetensors";
  absl::StatusOr<std::map<std::string, NamedTensor>> tensors = ReadSafetensors(shard);
  ASSERT_THAT(tensors, IsOk());
  std::vector<NamedTensor> list;
  for (auto& [name, t] : *tensors) list.push_back(t);
  list[0].data[0] = std::numeric_limits<float>::infinity();
  ASSERT_THAT(WriteSafetensors(shard, list), IsOk());
  std::ifstream in(shard, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EditManifest(dir, [&](nlohmann::json& m) {
    m["shards"][0]["bytes"] = bytes.size();
    m["shards"][0]["crc32"] = Crc32(bytes);
  });
  absl::StatusOr<CheckpointInfo> info = VerifyCheckpoint(dir);
  ASSERT_THAT(info, IsOk());
  TrainingRun other = Build(1, 5);
  EXPECT_THAT(RestoreCheckpoint(*info, States(other, {0}), true),
              StatusIs(absl::StatusCode::kDataLoss,
                       AllOf(HasSubstr(list[0].name), HasSubstr("not finite"))));
}

TEST(CheckpointTest, DiskFullRemovesThePartialFolderSaysWhatItNeedsAndKeepsTheLastGoodOne) {
  TrainingRun r = Build(1);
  const std::string probe = WriteOne(r, TempRoot("disk_probe"), 1);
  uintmax_t one = 0;
  for (const auto& e : fs::directory_iterator(probe)) one += fs::file_size(e.path());
  absl::StatusOr<std::string> disk = MountTinyDisk(TempRoot("disk_full"), one + one / 2);
  if (!disk.ok()) GTEST_SKIP() << "cannot mount a small tmpfs here: " << disk.status();
  const std::string root = *disk + "/ckpt";
  WriteOne(r, root, 1);
  absl::StatusOr<std::string> second = WriteCheckpoint(root, Meta(2), States(r, {0}));
  EXPECT_THAT(second, StatusIs(absl::StatusCode::kResourceExhausted,
                               AllOf(HasSubstr("disk full"), HasSubstr("checkpoint needs"))));
  EXPECT_FALSE(fs::exists(root + "/.step_00000002.tmp"));
  std::vector<std::string> skipped;
  absl::StatusOr<CheckpointInfo> info = FindLatestCheckpoint(root, &skipped);
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->meta.step, 1);
  EXPECT_THAT(skipped, ::testing::IsEmpty());
}

}  // namespace
}  // namespace stagehand::runtime
