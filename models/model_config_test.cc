// Tests for model config files: the three example configs, Hugging Face names, the canonical
// form's round trip, and errors that name the layer and the field.
#include "models/model_config.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/gpt_chunk.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::models {
namespace {

using ::stagehand::testing::StatusIs;
using ::testing::HasSubstr;
using json = nlohmann::json;

GptConfig Load(const std::string& name) {
  absl::StatusOr<GptConfig> config = LoadModelConfig("models/configs/" + name);
  EXPECT_TRUE(config.ok()) << config.status();
  return config.ok() ? *config : GptConfig{};
}

TEST(ModelConfigTest, Gpt2FileIsGpt2Small) {
  GptConfig c = Load("gpt2_124m.json");
  EXPECT_EQ(ModelConfigToJson(c), ModelConfigToJson(Gpt2Small(1337)));
  EXPECT_EQ(GptParameterBound(c), 124439808);  // Hugging Face's GPT-2 count
  EXPECT_EQ(DescribeModel(c),
            "12 layers (attn+mlp x12), d_model 768, 12 heads, layernorm, gelu, learned "
            "positions, tied head, 124.4M parameters");
}

TEST(ModelConfigTest, LlamaFileTakesLlamaDefaults) {
  GptConfig c = Load("llama_small.json");
  EXPECT_EQ(c.norm, NormKind::kRmsNorm);
  EXPECT_EQ(c.norm_eps, 1e-6);
  EXPECT_EQ(c.activation, ActivationKind::kSwiGlu);
  EXPECT_EQ(c.positions, PositionKind::kRope);
  EXPECT_FALSE(c.tied_head);
  EXPECT_FALSE(c.bias);
  ASSERT_EQ(c.layers.size(), 4u);
  EXPECT_EQ(c.KvHeads(c.layers[3]), 2);
  EXPECT_EQ(c.FfnHidden(c.layers[3]), 344);
}

TEST(ModelConfigTest, HeterogeneousFileMixesEveryBlockKind) {
  GptConfig c = Load("heterogeneous.json");
  ASSERT_EQ(c.layers.size(), 6u);
  EXPECT_EQ(c.layers[1].ffn_hidden, 0);  // ffn_mult 4 is the default width
  EXPECT_EQ(c.layers[2].attention, AttentionKind::kLinear);
  EXPECT_EQ(c.layers[3].attention, AttentionKind::kNone);
  EXPECT_EQ(c.layers[3].ffn_hidden, 688);  // 5.375 x 128
  EXPECT_EQ(c.layers[4].mlp, MlpKind::kLinear);
  EXPECT_EQ(c.layers[5].mlp, MlpKind::kNone);
  // Every example builds, chunk by chunk.
  for (const char* name : {"gpt2_124m.json", "llama_small.json", "heterogeneous.json"}) {
    GptConfig config = Load(name);
    if (config.d_model > 256) continue;  // GPT-2 small: valid above, too big to build here
    auto cuts = CutLayers(static_cast<int>(config.layers.size()), 2);
    ASSERT_TRUE(cuts.ok());
    for (const ChunkSpec& spec : *cuts) {
      EXPECT_TRUE(GptChunk<float>::Create(config, spec, ChunkOptions{1, 16, 1}).ok()) << name;
    }
  }
}

TEST(ModelConfigTest, MoeFileMixesDenseAndMoeLayers) {
  GptConfig c = Load("moe_small.json");
  ASSERT_EQ(c.layers.size(), 4u);
  EXPECT_EQ(c.layers[0].mlp, MlpKind::kDense);
  EXPECT_EQ(c.layers[0].moe, MoeSpec{});
  EXPECT_EQ(c.layers[1].mlp, MlpKind::kMoe);
  EXPECT_EQ(c.layers[1].moe, (MoeSpec{8, 2, 128, 128, 1.25, 0.01, 0.001}));
  EXPECT_EQ(c.layers[3].moe, (MoeSpec{8, 1, 128, 128, 0.0, 0.01, 0.001}));  // dropless, top-1
  EXPECT_EQ(DescribeModel(c),
            "4 layers (attn+mlp x2, attn+moe(e=8,k=2,ffn=128,shared=128,cf=1.25,aux=0.01,"
            "z=0.001) x1, attn+moe(e=8,k=1,ffn=128,shared=128,dropless,aux=0.01,z=0.001) x1), "
            "d_model 64, 4 heads, rmsnorm, swiglu, rope positions, untied head, 0.6M parameters");
  auto cuts = CutLayers(4, 2);
  ASSERT_TRUE(cuts.ok());
  for (const ChunkSpec& spec : *cuts) {
    auto chunk = GptChunk<float>::Create(c, spec, ChunkOptions{1, 16, 1});
    ASSERT_TRUE(chunk.ok()) << chunk.status();
    int64_t total = 0;
    for (const ParamInfo& info : (*chunk)->params().infos()) total += info.size;
    EXPECT_GT(total, 0);
  }
}

TEST(ModelConfigTest, ModelWideMoeWithoutALayersListMakesEveryLayerMoe) {
  json j = {
      {"vocab_size", 256},
      {"max_seq_len", 64},
      {"d_model", 32},
      {"num_heads", 4},
      {"num_hidden_layers", 2},
      {"moe",
       {{"num_local_experts", 4}, {"num_experts_per_tok", 2}, {"router_aux_loss_coef", 0.02}}}};
  absl::StatusOr<GptConfig> c = ModelConfigFromJson(j, "mixtral-like");
  ASSERT_TRUE(c.ok()) << c.status();
  for (const LayerSpec& l : c->layers) {
    EXPECT_EQ(l.mlp, MlpKind::kMoe);
    EXPECT_EQ(l.moe, (MoeSpec{4, 2, 0, 0, 0.0, 0.02, 0.0}));
  }
}

TEST(ModelConfigTest, CanonicalFormRoundTrips) {
  for (const char* name :
       {"gpt2_124m.json", "llama_small.json", "heterogeneous.json", "moe_small.json"}) {
    GptConfig c = Load(name);
    absl::StatusOr<GptConfig> back = ModelConfigFromJson(ModelConfigToJson(c), "round trip");
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(ModelConfigToJson(*back), ModelConfigToJson(c)) << name;
  }
  // A GPT-2 config writes exactly the fields checkpoints have always recorded.
  json gpt2 = ModelConfigToJson(UniformGpt(2, 32, 4, 256, 64, 7));
  EXPECT_EQ(gpt2.dump(),
            R"({"d_model":32,"layers":[{"attention":"causal","mlp":"dense"},)"
            R"({"attention":"causal","mlp":"dense"}],"max_seq_len":64,"num_heads":4,"seed":7,)"
            R"("vocab_size":256})");
}

TEST(ModelConfigTest, ErrorsNameTheLayerAndTheField) {
  json base = {{"vocab_size", 256}, {"max_seq_len", 64}, {"d_model", 64}, {"num_heads", 8}};
  struct Case {
    json patch;
    std::string message;
  };
  std::vector<Case> cases = {
      {{{"layers",
         {{{"attention", "causal"}}, {{"attention", {{"kind", "causal"}, {"n_kv_heads", 3}}}}}}},
       "f.json: layers[1].attention.n_kv_heads=3 does not divide num_heads=8"},
      {{{"layers", {{{"mlp", "mlp"}}}}},
       "layers[0].mlp.kind=\"mlp\": must be one of dense, linear, moe, none"},
      {{{"layers", {{{"mlp", "moe"}}}}}, "layers[0].mlp.num_experts=0: must be in [1, 1024]"},
      {{{"layers", {{{"mlp", {{"kind", "moe"}, {"num_experts", 4}, {"top_k", 5}}}}}}},
       "layers[0].mlp.top_k=5: must be in [1, num_experts=4]"},
      {{{"layers",
         {{{"mlp",
            {{"kind", "moe"},
             {"num_experts", 4},
             {"capacity_factor", 1.5},
             {"dropless", true}}}}}}},
       "layers[0].mlp.dropless=true and layers[0].mlp.capacity_factor=1.5: give a capacity_factor, "
       "or dropless: true, not both"},
      {{{"layers", {{{"mlp", {{"kind", "moe"}, {"num_experts", 4}, {"dropless", false}}}}}}},
       "give a capacity_factor, or dropless: true"},
      {{{"layers", {{{"mlp", {{"kind", "moe"}, {"num_experts", 4}, {"capacity_factor", 0}}}}}}},
       "layers[0].mlp.capacity_factor=0: must be positive (use dropless: true for no capacity)"},
      {{{"layers", {{{"mlp", {{"kind", "moe"}, {"num_experts", 2}, {"aux_loss_coeff", -1}}}}}}},
       "layers[0].mlp.aux_loss_coeff=-1: must be in [0, 1e6]"},
      {{{"layers", {{{"mlp", {{"kind", "moe"}, {"num_experts", 2}, {"experts", 2}}}}}}},
       "layers[0].mlp.experts: unknown field"},
      {{{"num_layers", 2}, {"moe", {{"num_experts", 2}, {"top_k", 0}}}}, "layers[0].mlp.top_k=0"},
      {{{"num_layers", 2}, {"moe", {{"num_expert", 2}}}}, "moe.num_expert: unknown field"},
      {{{"layers", {{{"mlp", {{"kind", "dense"}, {"ffn_hiden", 3}}}}}}},
       "layers[0].mlp.ffn_hiden: unknown field"},
      {{{"num_layers", 2}, {"norm", "batchnorm"}},
       "norm=\"batchnorm\": must be one of layernorm, rmsnorm"},
      {{{"num_layers", 2}, {"hidden_size", 64}}, "d_model and hidden_size say the same thing"},
      {{{"num_layers", 2}, {"rope_theta", "big"}}, "rope_theta=\"big\": must be a finite number"},
      {{{"num_layers", 2}, {"dmodel", 3}}, "dmodel: unknown field"},
      {{{"num_layers", 0}}, "num_layers=0: give 1 to 4096 layers, or a layers list"},
      {{{"num_layers", 3}, {"layers", {json::object()}}}, "num_layers=3 but layers lists 1 layers"},
      {{{"num_layers", 2}, {"norm_eps", 1e-6}}, "norm_eps=1e-06: layernorm uses GPT-2's epsilon"},
      {{{"num_layers", 1}, {"positions", "rope"}, {"d_model", 24}},
       "positions=rope needs an even head size"},
      {{{"layers", {{{"attention", {{"kind", "none"}, {"n_kv_heads", 2}}}}}}},
       "layers[0].attention.n_kv_heads=2 is set, but the layer has no attention"},
  };
  for (const Case& c : cases) {
    json j = base;
    j.update(c.patch);
    EXPECT_THAT(ModelConfigFromJson(j, "f.json").status(),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)))
        << j.dump();
  }
  EXPECT_THAT(ModelConfigFromJson(json::array(), "f.json").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("must be a JSON object")));
  EXPECT_THAT(LoadModelConfig("models/configs/missing.json").status(),
              StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace stagehand::models
