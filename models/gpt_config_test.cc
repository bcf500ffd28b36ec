// Tests for GptConfig validation: every bad field is named.
#include "models/gpt_config.h"

#include "gtest/gtest.h"

namespace stagehand::models {
namespace {

TEST(GptConfigTest, DefaultIsValid) { EXPECT_TRUE(ValidateGptConfig(GptConfig{}).ok()); }

TEST(GptConfigTest, Gpt2SmallIsValid) { EXPECT_TRUE(ValidateGptConfig(Gpt2Small(1)).ok()); }

TEST(GptConfigTest, WidthNotDivisibleByHeadsNamesBothFields) {
  GptConfig c = UniformGpt(2, 30, 4, 256, 64, 1);
  absl::Status s = ValidateGptConfig(c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("d_model=30"), std::string::npos) << s;
  EXPECT_NE(s.message().find("heads=4"), std::string::npos) << s;
}

TEST(GptConfigTest, EachBadFieldIsNamed) {
  struct Case {
    GptConfig config;
    std::string field;
  };
  std::vector<Case> cases = {
      {UniformGpt(0, 32, 4, 256, 64, 1), "layers"}, {UniformGpt(2, 0, 4, 256, 64, 1), "d_model"},
      {UniformGpt(2, 32, 0, 256, 64, 1), "heads"},  {UniformGpt(2, 32, 4, 1, 64, 1), "vocab_size"},
      {UniformGpt(2, 32, 4, 256, 0, 1), "seq_len"},
  };
  for (const Case& c : cases) {
    absl::Status s = ValidateGptConfig(c.config);
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message().find(c.field), std::string::npos) << s;
  }
}

TEST(GptConfigTest, HeterogeneousLayersDescribe) {
  LayerSpec s{AttentionKind::kNone, MlpKind::kDense};
  EXPECT_EQ(LayerSpecToString(s), "no-attn+mlp");
}

TEST(GptConfigTest, AbsurdSizesAreRefusedWithTheLimit) {
  struct Case {
    GptConfig config;
    std::string field;
  };
  std::vector<Case> cases = {
      {UniformGpt(2, 1000000, 1, 256, 64, 1), "d_model"},
      {UniformGpt(100000, 32, 4, 256, 64, 1), "layers"},
      {UniformGpt(2, 32, 4, 1 << 30, 64, 1), "vocab_size"},
      {UniformGpt(2, 32, 4, 256, 2147483647, 1), "seq_len"},
      {UniformGpt(1024, 65536, 64, 256, 64, 1), "parameters"},
  };
  for (const Case& c : cases) {
    absl::Status s = ValidateGptConfig(c.config);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_NE(s.message().find(c.field), std::string::npos) << s;
    EXPECT_NE(s.message().find("at most"), std::string::npos) << s;
  }
}

}  // namespace
}  // namespace stagehand::models
