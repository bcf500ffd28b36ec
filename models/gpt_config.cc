// GptConfig construction and validation.
#include "models/gpt_config.h"

#include "absl/strings/str_cat.h"

namespace stagehand::models {

GptConfig UniformGpt(int num_layers, int d_model, int num_heads, int vocab_size, int max_seq_len,
                     uint64_t seed) {
  GptConfig config;
  config.layers.assign(num_layers < 0 ? 0 : num_layers, LayerSpec{});
  config.d_model = d_model;
  config.num_heads = num_heads;
  config.vocab_size = vocab_size;
  config.max_seq_len = max_seq_len;
  config.seed = seed;
  return config;
}

GptConfig Gpt2Small(uint64_t seed) { return UniformGpt(12, 768, 12, 50257, 1024, seed); }

absl::Status ValidateGptConfig(const GptConfig& c) {
  auto bad = [](const std::string& field, int64_t value, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(field, "=", value, ": ", why));
  };
  if (c.layers.empty()) return bad("layers", 0, "the model needs at least one layer");
  if (c.d_model <= 0) return bad("d_model", c.d_model, "must be positive");
  if (c.num_heads <= 0) return bad("heads", c.num_heads, "must be positive");
  if (c.d_model % c.num_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("d_model=", c.d_model,
                                                   " is not divisible by heads=", c.num_heads));
  }
  if (c.vocab_size <= 1) return bad("vocab_size", c.vocab_size, "must be at least 2");
  if (c.max_seq_len <= 0) return bad("seq_len", c.max_seq_len, "must be positive");
  return absl::OkStatus();
}

std::string LayerSpecToString(const LayerSpec& spec) {
  return absl::StrCat(spec.attention == AttentionKind::kCausal ? "attn" : "no-attn", "+",
                      spec.mlp == MlpKind::kDense ? "mlp" : "no-mlp");
}

}  // namespace stagehand::models
