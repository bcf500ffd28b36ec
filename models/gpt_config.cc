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

int64_t GptParameterBound(const GptConfig& c) {
  const int64_t C = c.d_model, L = static_cast<int64_t>(c.layers.size());
  return (int64_t{c.vocab_size} + c.max_seq_len) * C + L * (12 * C * C + 13 * C) + 2 * C;
}

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
  auto at_most = [&](const std::string& field, int64_t value, int64_t limit) {
    return bad(field, value, absl::StrCat("must be at most ", limit));
  };
  if (static_cast<int64_t>(c.layers.size()) > kMaxLayers) return at_most("layers", c.layers.size(), kMaxLayers);
  if (c.d_model > kMaxDModel) return at_most("d_model", c.d_model, kMaxDModel);
  if (c.vocab_size > kMaxVocabSize) return at_most("vocab_size", c.vocab_size, kMaxVocabSize);
  if (c.max_seq_len > kMaxSeqLen) return at_most("seq_len", c.max_seq_len, kMaxSeqLen);
  if (const int64_t n = GptParameterBound(c); n > kMaxParameters) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the model has about ", n, " parameters (", n * 4 / (int64_t{1} << 30),
        " GiB of float32); this build allows at most ", kMaxParameters, " parameters"));
  }
  return absl::OkStatus();
}

std::string LayerSpecToString(const LayerSpec& spec) {
  return absl::StrCat(spec.attention == AttentionKind::kCausal ? "attn" : "no-attn", "+",
                      spec.mlp == MlpKind::kDense ? "mlp" : "no-mlp");
}

}  // namespace stagehand::models
