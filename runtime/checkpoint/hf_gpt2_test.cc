// Tests for the Hugging Face GPT-2 export: names and Conv1D layouts, and a bitwise round trip.
#include "runtime/checkpoint/hf_gpt2.h"

#include <fstream>
#include <iterator>

#include "gtest/gtest.h"

namespace stagehand::runtime {
namespace {

std::vector<std::unique_ptr<Chunk>> Model(int num_chunks, uint64_t seed) {
  auto built = BuildChunks(models::UniformGpt(2, 8, 2, 256, 16, seed), num_chunks,
                           models::ChunkOptions{1, 16, 1});
  EXPECT_TRUE(built.ok()) << built.status();
  return std::move(*built);
}

std::vector<Chunk*> Pointers(const std::vector<std::unique_ptr<Chunk>>& owned) {
  std::vector<Chunk*> out;
  for (const auto& c : owned) out.push_back(c.get());
  return out;
}

std::string Bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST(HfGpt2Test, UsesTransformersNamesAndConv1DLayouts) {
  auto model = Model(2, 1);
  const std::string path = testing::TempDir() + "/gpt2.safetensors";
  ASSERT_TRUE(ExportHfGpt2(path, Pointers(model)).ok());
  absl::StatusOr<std::map<std::string, NamedTensor>> hf = ReadSafetensors(path);
  ASSERT_TRUE(hf.ok()) << hf.status();
  std::vector<std::string> names;
  for (const auto& [name, t] : *hf) names.push_back(name);
  const std::vector<std::string> expected_block = {
      "attn.c_attn.bias", "attn.c_attn.weight", "attn.c_proj.bias", "attn.c_proj.weight",
      "ln_1.bias",        "ln_1.weight",        "ln_2.bias",        "ln_2.weight",
      "mlp.c_fc.bias",    "mlp.c_fc.weight",    "mlp.c_proj.bias",  "mlp.c_proj.weight"};
  std::vector<std::string> expected;
  for (int l = 0; l < 2; ++l) {
    for (const std::string& n : expected_block)
      expected.push_back("h." + std::to_string(l) + "." + n);
  }
  for (const char* n : {"ln_f.bias", "ln_f.weight", "wpe.weight", "wte.weight"})
    expected.push_back(n);
  EXPECT_EQ(names, expected);
  const int64_t C = 8;
  EXPECT_EQ(hf->at("wte.weight").shape, (std::vector<int64_t>{256, C}));
  EXPECT_EQ(hf->at("wpe.weight").shape, (std::vector<int64_t>{16, C}));
  EXPECT_EQ(hf->at("h.0.attn.c_attn.weight").shape, (std::vector<int64_t>{C, 3 * C}));
  EXPECT_EQ(hf->at("h.0.attn.c_proj.weight").shape, (std::vector<int64_t>{C, C}));
  EXPECT_EQ(hf->at("h.1.mlp.c_fc.weight").shape, (std::vector<int64_t>{C, 4 * C}));
  EXPECT_EQ(hf->at("h.1.mlp.c_proj.weight").shape, (std::vector<int64_t>{4 * C, C}));
  // HF[i][o] == ours[o][i]: our c_attn is (3C, C).
  const float* ours = model[0]->params().value("h.0.attn.c_attn.weight");
  const std::vector<float>& theirs = hf->at("h.0.attn.c_attn.weight").data;
  for (int64_t o = 0; o < 3 * C; ++o) {
    for (int64_t i = 0; i < C; ++i) ASSERT_EQ(theirs[i * 3 * C + o], ours[o * C + i]);
  }
}

TEST(HfGpt2Test, ExportThenImportIsBitwiseAndReExportsTheSameBytes) {
  auto source = Model(2, 5);
  auto target = Model(1, 6);  // another cut, other weights
  const std::string a = testing::TempDir() + "/a.safetensors",
                    b = testing::TempDir() + "/b.safetensors";
  ASSERT_TRUE(ExportHfGpt2(a, Pointers(source)).ok());
  ASSERT_TRUE(ImportHfGpt2(a, Pointers(target)).ok());
  std::vector<NamedTensor> x = CollectParameters(Pointers(source)),
                           y = CollectParameters(Pointers(target));
  ASSERT_EQ(x.size(), y.size());
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(x[i].name, y[i].name);
    EXPECT_EQ(0, std::memcmp(x[i].data.data(), y[i].data.data(), x[i].data.size() * sizeof(float)))
        << x[i].name;
  }
  ASSERT_TRUE(ExportHfGpt2(b, Pointers(target)).ok());
  EXPECT_EQ(Bytes(a), Bytes(b));
}

TEST(HfGpt2Test, ImportAcceptsLmHeadModelFilesAndNamesMissingTensors) {
  auto model = Model(1, 2);
  std::vector<NamedTensor> hf = ToHfGpt2(CollectParameters(Pointers(model)));
  for (NamedTensor& t : hf) t.name = "transformer." + t.name;
  hf.push_back({"lm_head.weight", {256, 8}, std::vector<float>(256 * 8)});
  hf.push_back({"transformer.h.0.attn.bias", {1, 1, 16, 16}, std::vector<float>(256)});
  const std::string path = testing::TempDir() + "/lm_head.safetensors";
  ASSERT_TRUE(WriteSafetensors(path, hf).ok());
  auto target = Model(1, 3);
  ASSERT_TRUE(ImportHfGpt2(path, Pointers(target)).ok());
  EXPECT_EQ(CollectParameters(Pointers(target))[0].data,
            CollectParameters(Pointers(model))[0].data);
  hf.erase(hf.begin());
  ASSERT_TRUE(WriteSafetensors(path, hf).ok());
  absl::Status s = ImportHfGpt2(path, Pointers(target));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("no tensor for parameter"), std::string::npos) << s;
}

}  // namespace
}  // namespace stagehand::runtime
