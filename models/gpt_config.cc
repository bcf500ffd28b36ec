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
  const int64_t C = c.d_model, V = c.vocab_size;
  const int64_t norm = c.norm == NormKind::kLayerNorm ? 2 * C : C;
  const int64_t bias = c.bias ? 1 : 0;
  int64_t n = V * C + (c.positions == PositionKind::kLearned ? int64_t{c.max_seq_len} * C : 0);
  for (const LayerSpec& l : c.layers) {
    if (l.attention == AttentionKind::kCausal) {
      n += norm + C * c.QkvWidth(l) + bias * c.QkvWidth(l) + C * C + bias * C;
    } else if (l.attention == AttentionKind::kLinear) {
      n += norm + C * C + bias * C;
    }
    if (l.mlp == MlpKind::kDense) {
      n += norm + C * c.FcWidth(l) + bias * c.FcWidth(l) + int64_t{c.FfnHidden(l)} * C + bias * C;
    } else if (l.mlp == MlpKind::kLinear) {
      n += norm + C * C + bias * C;
    } else if (l.mlp == MlpKind::kMoe) {
      const auto mlp = [&](int64_t ffn) {
        const int64_t fc = c.FcWidthOf(static_cast<int>(ffn));
        return C * fc + bias * fc + ffn * C + bias * C;
      };
      n += norm + int64_t{l.moe.num_experts} * C + int64_t{l.moe.num_experts} * mlp(c.ExpertFfn(l));
      if (l.moe.shared_expert_ffn > 0) n += mlp(l.moe.shared_expert_ffn);
    }
  }
  return n + norm + (c.tied_head ? 0 : V * C);
}

namespace {

absl::Status Bad(const std::string& field, const std::string& value, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(field, "=", value, ": ", why));
}

absl::Status ValidateSizes(const GptConfig& c) {
  if (c.layers.empty()) return Bad("layers", "0", "the model needs at least one layer");
  if (c.d_model <= 0) return Bad("d_model", absl::StrCat(c.d_model), "must be positive");
  if (c.num_heads <= 0) return Bad("heads", absl::StrCat(c.num_heads), "must be positive");
  if (c.d_model % c.num_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("d_model=", c.d_model, " is not divisible by heads=", c.num_heads));
  }
  if (c.vocab_size <= 1) return Bad("vocab_size", absl::StrCat(c.vocab_size), "must be at least 2");
  if (c.max_seq_len <= 0) return Bad("seq_len", absl::StrCat(c.max_seq_len), "must be positive");
  auto at_most = [&](const std::string& field, int64_t value, int64_t limit) {
    return Bad(field, absl::StrCat(value), absl::StrCat("must be at most ", limit));
  };
  if (static_cast<int64_t>(c.layers.size()) > kMaxLayers) {
    return at_most("layers", c.layers.size(), kMaxLayers);
  }
  if (c.d_model > kMaxDModel) return at_most("d_model", c.d_model, kMaxDModel);
  if (c.vocab_size > kMaxVocabSize) return at_most("vocab_size", c.vocab_size, kMaxVocabSize);
  if (c.max_seq_len > kMaxSeqLen) return at_most("seq_len", c.max_seq_len, kMaxSeqLen);
  return absl::OkStatus();
}

absl::Status ValidateOptions(const GptConfig& c) {
  if (!(c.norm_eps > 0.0 && c.norm_eps < 1.0)) {
    return Bad("norm_eps", absl::StrCat(c.norm_eps), "must be in (0, 1)");
  }
  if (c.norm == NormKind::kLayerNorm && c.norm_eps != 1e-5) {
    return Bad("norm_eps", absl::StrCat(c.norm_eps),
               "layernorm uses GPT-2's epsilon 1e-5 (use norm: rmsnorm for another)");
  }
  if (c.positions == PositionKind::kRope) {
    if (!(c.rope_base > 1.0 && c.rope_base < 1e12)) {
      return Bad("rope_base", absl::StrCat(c.rope_base), "must be in (1, 1e12)");
    }
    if (c.head_size() % 2 != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("positions=rope needs an even head size; d_model=", c.d_model,
                       " / num_heads=", c.num_heads, " is ", c.head_size()));
    }
  }
  return absl::OkStatus();
}

inline constexpr int kMaxExperts = 1024;

absl::Status ValidateMoe(const MoeSpec& m, const std::string& at) {
  if (m.num_experts < 1 || m.num_experts > kMaxExperts) {
    return Bad(at + ".num_experts", absl::StrCat(m.num_experts),
               absl::StrCat("must be in [1, ", kMaxExperts, "]"));
  }
  if (m.top_k < 1 || m.top_k > m.num_experts) {
    return Bad(at + ".top_k", absl::StrCat(m.top_k),
               absl::StrCat("must be in [1, num_experts=", m.num_experts, "]"));
  }
  if (m.ffn_hidden < 0 || m.ffn_hidden > 16 * kMaxDModel) {
    return Bad(at + ".ffn_hidden", absl::StrCat(m.ffn_hidden),
               absl::StrCat("must be in [1, ", 16 * kMaxDModel, "] (0: 4 x d_model)"));
  }
  if (m.shared_expert_ffn < 0 || m.shared_expert_ffn > 16 * kMaxDModel) {
    return Bad(at + ".shared_expert_ffn", absl::StrCat(m.shared_expert_ffn),
               absl::StrCat("must be in [0, ", 16 * kMaxDModel, "] (0: no shared expert)"));
  }
  if (!(m.capacity_factor == 0.0 || (m.capacity_factor > 0.0 && m.capacity_factor <= 1e6))) {
    return Bad(at + ".capacity_factor", absl::StrCat(m.capacity_factor),
               "must be positive (or 0 / dropless: true for no capacity)");
  }
  if (!(m.aux_loss_coeff >= 0.0 && m.aux_loss_coeff <= 1e6)) {
    return Bad(at + ".aux_loss_coeff", absl::StrCat(m.aux_loss_coeff), "must be in [0, 1e6]");
  }
  if (!(m.z_loss_coeff >= 0.0 && m.z_loss_coeff <= 1e6)) {
    return Bad(at + ".z_loss_coeff", absl::StrCat(m.z_loss_coeff), "must be in [0, 1e6]");
  }
  return absl::OkStatus();
}

absl::Status ValidateLayer(const GptConfig& c, int i) {
  const LayerSpec& l = c.layers[i];
  const std::string at = absl::StrCat("layers[", i, "]");
  if (l.num_kv_heads < 0 || (l.num_kv_heads > 0 && c.num_heads % l.num_kv_heads != 0)) {
    return absl::InvalidArgumentError(absl::StrCat(at, ".attention.n_kv_heads=", l.num_kv_heads,
                                                   " does not divide num_heads=", c.num_heads));
  }
  if (l.num_kv_heads > 0 && l.attention != AttentionKind::kCausal) {
    return absl::InvalidArgumentError(absl::StrCat(at, ".attention.n_kv_heads=", l.num_kv_heads,
                                                   " is set, but the layer has no attention"));
  }
  if (l.ffn_hidden < 0 || l.ffn_hidden > 16 * kMaxDModel) {
    return Bad(at + ".mlp.ffn_hidden", absl::StrCat(l.ffn_hidden),
               absl::StrCat("must be in [1, ", 16 * kMaxDModel, "]"));
  }
  if (l.ffn_hidden > 0 && l.mlp != MlpKind::kDense) {
    return absl::InvalidArgumentError(absl::StrCat(at, ".mlp.ffn_hidden=", l.ffn_hidden,
                                                   " is set, but the layer has no dense MLP"));
  }
  if (l.mlp == MlpKind::kMoe) return ValidateMoe(l.moe, at + ".mlp");
  if (!(l.moe == MoeSpec{})) {
    return absl::InvalidArgumentError(
        absl::StrCat(at, ".mlp: MoE settings are given, but the layer's mlp is not moe"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateGptConfig(const GptConfig& c) {
  if (absl::Status s = ValidateSizes(c); !s.ok()) return s;
  if (absl::Status s = ValidateOptions(c); !s.ok()) return s;
  for (int i = 0; i < static_cast<int>(c.layers.size()); ++i) {
    if (absl::Status s = ValidateLayer(c, i); !s.ok()) return s;
  }
  if (const int64_t n = GptParameterBound(c); n > kMaxParameters) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the model has about ", n, " parameters (", n * 4 / (int64_t{1} << 30),
        " GiB of float32); this build allows at most ", kMaxParameters, " parameters"));
  }
  return absl::OkStatus();
}

std::string LayerSpecToString(const LayerSpec& spec) {
  std::string attention = spec.attention == AttentionKind::kCausal   ? "attn"
                          : spec.attention == AttentionKind::kLinear ? "linear-attn"
                                                                     : "no-attn";
  if (spec.num_kv_heads > 0) absl::StrAppend(&attention, "(kv=", spec.num_kv_heads, ")");
  std::string mlp = spec.mlp == MlpKind::kDense    ? "mlp"
                    : spec.mlp == MlpKind::kLinear ? "linear-mlp"
                    : spec.mlp == MlpKind::kMoe    ? "moe"
                                                   : "no-mlp";
  if (spec.ffn_hidden > 0) absl::StrAppend(&mlp, "(ffn=", spec.ffn_hidden, ")");
  if (spec.mlp == MlpKind::kMoe) {
    const MoeSpec& m = spec.moe;
    absl::StrAppend(&mlp, "(e=", m.num_experts, ",k=", m.top_k);
    if (m.ffn_hidden > 0) absl::StrAppend(&mlp, ",ffn=", m.ffn_hidden);
    if (m.shared_expert_ffn > 0) absl::StrAppend(&mlp, ",shared=", m.shared_expert_ffn);
    absl::StrAppend(&mlp, m.capacity_factor > 0 ? absl::StrCat(",cf=", m.capacity_factor)
                                                : std::string(",dropless"));
    if (m.aux_loss_coeff > 0) absl::StrAppend(&mlp, ",aux=", m.aux_loss_coeff);
    if (m.z_loss_coeff > 0) absl::StrAppend(&mlp, ",z=", m.z_loss_coeff);
    absl::StrAppend(&mlp, ")");
  }
  return absl::StrCat(attention, "+", mlp);
}

}  // namespace stagehand::models
