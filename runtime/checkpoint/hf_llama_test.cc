// Tests for the Hugging Face Llama naming: transformers' names and split projections for a
// GQA + SwiGLU model, a bitwise round trip for Llama-style and heterogeneous models, and clear
// errors for a missing piece or a foreign tensor.
#include "runtime/checkpoint/hf_llama.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/test_configs.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::runtime {
namespace {

using ::stagehand::testing::StatusIs;
using ::testing::HasSubstr;

models::GptConfig Llama() { return models::testing::LlamaStyle(2, 8, 4, 2, 12, 16, 5); }

models::GptConfig Mixed() { return models::testing::MixedBlocks(4, 8, 2, 16, 6); }

// Llama-style with an MoE layer (3 experts, shared expert) and a GELU-free dense layer.
models::GptConfig Moe() {
  models::GptConfig c = Llama();
  c.layers[1].mlp = models::MlpKind::kMoe;
  c.layers[1].ffn_hidden = 0;
  c.layers[1].moe = models::MoeSpec{3, 2, 6, 5, 1.25, 0.01, 0.0};
  return c;
}

std::vector<std::unique_ptr<Chunk>> Build(const models::GptConfig& c, int chunks) {
  auto built = BuildChunks(c, chunks, models::ChunkOptions{1, 16, 1});
  EXPECT_TRUE(built.ok()) << built.status();
  return std::move(*built);
}

std::vector<Chunk*> Pointers(const std::vector<std::unique_ptr<Chunk>>& owned) {
  std::vector<Chunk*> out;
  for (const auto& c : owned) out.push_back(c.get());
  return out;
}

TEST(HfLlamaTest, UsesTransformersNamesAndSplitsFusedProjections) {
  const models::GptConfig c = Llama();
  EXPECT_FALSE(UsesGpt2Names(c));
  EXPECT_TRUE(UsesGpt2Names(models::UniformGpt(2, 8, 2, 256, 16, 1)));
  auto model = Build(c, 2);
  const std::string path = ::testing::TempDir() + "/llama.safetensors";
  ASSERT_TRUE(ExportHf(path, Pointers(model), c).ok());
  absl::StatusOr<std::map<std::string, NamedTensor>> hf = ReadSafetensors(path);
  ASSERT_TRUE(hf.ok()) << hf.status();
  std::vector<std::string> names;
  for (const auto& [name, t] : *hf) names.push_back(name);
  EXPECT_THAT(
      names,
      ::testing::ElementsAre(
          "lm_head.weight", "model.embed_tokens.weight", "model.layers.0.input_layernorm.weight",
          "model.layers.0.mlp.down_proj.weight", "model.layers.0.mlp.gate_proj.weight",
          "model.layers.0.mlp.up_proj.weight", "model.layers.0.post_attention_layernorm.weight",
          "model.layers.0.self_attn.k_proj.weight", "model.layers.0.self_attn.o_proj.weight",
          "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.v_proj.weight",
          "model.layers.1.input_layernorm.weight", "model.layers.1.mlp.down_proj.weight",
          "model.layers.1.mlp.gate_proj.weight", "model.layers.1.mlp.up_proj.weight",
          "model.layers.1.post_attention_layernorm.weight",
          "model.layers.1.self_attn.k_proj.weight", "model.layers.1.self_attn.o_proj.weight",
          "model.layers.1.self_attn.q_proj.weight", "model.layers.1.self_attn.v_proj.weight",
          "model.norm.weight"));
  // 4 query heads and 2 key/value heads of size 2: q (8, 8), k and v (4, 8), out of (16, 8).
  EXPECT_EQ(hf->at("model.layers.0.self_attn.q_proj.weight").shape, (std::vector<int64_t>{8, 8}));
  EXPECT_EQ(hf->at("model.layers.0.self_attn.k_proj.weight").shape, (std::vector<int64_t>{4, 8}));
  EXPECT_EQ(hf->at("model.layers.0.mlp.gate_proj.weight").shape, (std::vector<int64_t>{12, 8}));
  const float* fused = model[0]->params().value("h.0.attn.c_attn.weight");
  const std::vector<float>& v = hf->at("model.layers.0.self_attn.v_proj.weight").data;
  for (int i = 0; i < 32; ++i) ASSERT_EQ(v[i], fused[12 * 8 + i]);  // v rows 12..15
  const float* fc = model[0]->params().value("h.0.mlp.c_fc.weight");
  const std::vector<float>& up = hf->at("model.layers.0.mlp.up_proj.weight").data;
  for (int i = 0; i < 96; ++i) ASSERT_EQ(up[i], fc[12 * 8 + i]);  // up rows 12..23
}

TEST(HfLlamaTest, MoeLayersUseMixtralNames) {
  const models::GptConfig c = Moe();
  EXPECT_FALSE(UsesGpt2Names(c));
  auto model = Build(c, 1);
  absl::StatusOr<std::vector<NamedTensor>> hf = ToHfLlama(CollectParameters(Pointers(model)), c);
  ASSERT_TRUE(hf.ok()) << hf.status();
  std::map<std::string, NamedTensor> files;
  for (const NamedTensor& t : *hf) files[t.name] = t;
  const std::string m = "model.layers.1.block_sparse_moe.";
  EXPECT_EQ(files.at(m + "gate.weight").shape, (std::vector<int64_t>{3, 8}));
  EXPECT_EQ(files.at(m + "experts.2.w1.weight").shape, (std::vector<int64_t>{6, 8}));
  EXPECT_EQ(files.at(m + "experts.2.w3.weight").shape, (std::vector<int64_t>{6, 8}));
  EXPECT_EQ(files.at(m + "experts.2.w2.weight").shape, (std::vector<int64_t>{8, 6}));
  EXPECT_EQ(files.at(m + "shared_expert.up_proj.weight").shape, (std::vector<int64_t>{5, 8}));
  EXPECT_EQ(files.at(m + "shared_expert.down_proj.weight").shape, (std::vector<int64_t>{8, 5}));
  const float* fc = model[0]->params().value("h.1.mlp.experts.2.c_fc.weight");
  const std::vector<float>& up = files.at(m + "experts.2.w3.weight").data;
  for (int i = 0; i < 48; ++i) ASSERT_EQ(up[i], fc[6 * 8 + i]);  // up rows 6..11
  EXPECT_EQ(files.count("model.layers.1.mlp.gate_proj.weight"), 0u);
}

TEST(HfLlamaTest, RoundTripsBitwiseUnderAnyCut) {
  for (const models::GptConfig& c : {Llama(), Mixed(), Moe()}) {
    auto source = Build(c, 1);
    auto target = Build(models::GptConfig(c), static_cast<int>(c.layers.size()));
    for (Chunk* chunk : Pointers(target)) {
      for (int64_t i = 0; i < chunk->params().size(); ++i) chunk->params().values()[i] = 0.5f;
    }
    const std::string a = ::testing::TempDir() + "/a.safetensors";
    const std::string b = ::testing::TempDir() + "/b.safetensors";
    ASSERT_TRUE(ExportHf(a, Pointers(source), c).ok());
    ASSERT_THAT(ImportHf(a, Pointers(target), c), ::stagehand::testing::IsOk());
    ASSERT_TRUE(ExportHf(b, Pointers(target), c).ok());
    auto first = ReadSafetensors(a), second = ReadSafetensors(b);
    ASSERT_TRUE(first.ok() && second.ok());
    ASSERT_EQ(first->size(), second->size());
    for (const auto& [name, t] : *first) EXPECT_EQ(t.data, second->at(name).data) << name;
  }
}

TEST(HfLlamaTest, MissingPiecesAndForeignTensorsAreNamed) {
  const models::GptConfig c = Llama();
  auto model = Build(c, 1);
  absl::StatusOr<std::vector<NamedTensor>> hf = ToHfLlama(CollectParameters(Pointers(model)), c);
  ASSERT_TRUE(hf.ok());
  std::map<std::string, NamedTensor> files;
  for (const NamedTensor& t : *hf) files[t.name] = t;
  auto without_k = files;
  without_k.erase("model.layers.1.self_attn.k_proj.weight");
  EXPECT_THAT(FromHfLlama(without_k, c).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("only 2 of the 3 pieces of h.1.attn.c_attn.weight")));
  auto foreign = files;
  foreign["model.layers.0.mlp.experts.0.weight"] = NamedTensor{"x", {1}, {0.f}};
  EXPECT_THAT(FromHfLlama(foreign, c).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("model.layers.0.mlp.experts.0.weight matches no parameter")));
  auto short_q = files;
  short_q["model.layers.0.self_attn.q_proj.weight"].shape = {4, 8};
  EXPECT_THAT(
      FromHfLlama(short_q, c).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("has 4 rows; the model needs 8")));
}

}  // namespace
}  // namespace stagehand::runtime
