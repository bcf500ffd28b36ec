#include "models/model_config.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace stagehand::models {
namespace {

using json = nlohmann::json;

// Hugging Face config.json keys that describe nothing we build: accepted and ignored.
const std::set<std::string>& IgnoredHuggingFaceKeys() {
  static const auto* keys = new std::set<std::string>{"_name_or_path",
                                                      "architectures",
                                                      "attention_dropout",
                                                      "attn_pdrop",
                                                      "bos_token_id",
                                                      "embd_pdrop",
                                                      "eos_token_id",
                                                      "head_dim",
                                                      "initializer_range",
                                                      "mlp_bias_note",
                                                      "pad_token_id",
                                                      "pretraining_tp",
                                                      "reorder_and_upcast_attn",
                                                      "resid_pdrop",
                                                      "rope_scaling",
                                                      "scale_attn_by_inverse_layer_idx",
                                                      "scale_attn_weights",
                                                      "summary_activation",
                                                      "summary_first_dropout",
                                                      "summary_proj_to_labels",
                                                      "summary_type",
                                                      "summary_use_proj",
                                                      "task_specific_params",
                                                      "torch_dtype",
                                                      "transformers_version",
                                                      "use_cache",
                                                      "activation_function",
                                                      "n_ctx"};
  return *keys;
}

// Typed, path-named access to one JSON object. Each Get marks its keys as read; Unread()
// lists the rest, so typos are errors instead of silently ignored settings.
class Fields {
 public:
  Fields(const json& object, std::string path) : object_(object), path_(std::move(path)) {}

  std::string Path(const std::string& key) const {
    return path_.empty() ? key : absl::StrCat(path_, ".", key);
  }

  // The one of `names` (aliases) present, or null; an error if two are.
  absl::StatusOr<const json*> Find(const std::vector<std::string>& names, std::string* found) {
    const json* value = nullptr;
    for (const std::string& name : names) {
      auto it = object_.find(name);
      if (it == object_.end()) continue;
      read_.insert(name);
      if (value != nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat(Path(*found), " and ", Path(name), " say the same thing; give one"));
      }
      value = &*it;
      *found = name;
    }
    return value;
  }

  absl::Status Int(const std::vector<std::string>& names, int* out, bool required) {
    std::string name;
    absl::StatusOr<const json*> v = Find(names, &name);
    if (!v.ok()) return v.status();
    if (*v == nullptr || (*v)->is_null()) return Missing(names, required);
    const json& j = **v;
    const bool fits = j.is_number_unsigned() ? j.get<uint64_t>() <= INT32_MAX
                      : j.is_number_integer()
                          ? j.get<int64_t>() >= INT32_MIN && j.get<int64_t>() <= INT32_MAX
                          : false;
    if (!fits) {
      return absl::InvalidArgumentError(
          absl::StrCat(Path(name), "=", j.dump(), ": must be an integer in 32 bits"));
    }
    *out = static_cast<int>(j.get<int64_t>());
    return absl::OkStatus();
  }

  absl::Status Seed(uint64_t* out) {
    std::string name;
    absl::StatusOr<const json*> v = Find({"seed"}, &name);
    if (!v.ok()) return v.status();
    if (*v == nullptr) return absl::OkStatus();
    if (!(*v)->is_number_unsigned()) {
      return absl::InvalidArgumentError(
          absl::StrCat(Path("seed"), "=", (*v)->dump(), ": must be a non-negative integer"));
    }
    *out = (*v)->get<uint64_t>();
    return absl::OkStatus();
  }

  absl::Status Double(const std::vector<std::string>& names, double* out) {
    std::string name;
    absl::StatusOr<const json*> v = Find(names, &name);
    if (!v.ok()) return v.status();
    if (*v == nullptr) return absl::OkStatus();
    if (!(*v)->is_number() || !std::isfinite((*v)->get<double>())) {
      return absl::InvalidArgumentError(
          absl::StrCat(Path(name), "=", (*v)->dump(), ": must be a finite number"));
    }
    *out = (*v)->get<double>();
    return absl::OkStatus();
  }

  absl::Status Bool(const std::vector<std::string>& names, bool* out) {
    std::string name;
    absl::StatusOr<const json*> v = Find(names, &name);
    if (!v.ok()) return v.status();
    if (*v == nullptr) return absl::OkStatus();
    if (!(*v)->is_boolean()) {
      return absl::InvalidArgumentError(
          absl::StrCat(Path(name), "=", (*v)->dump(), ": must be true or false"));
    }
    *out = (*v)->get<bool>();
    return absl::OkStatus();
  }

  // A string among `choices` (value -> what it means); `*out` is left alone when absent.
  template <typename T>
  absl::Status Choice(const std::vector<std::string>& names,
                      const std::map<std::string, T>& choices, T* out) {
    std::string name;
    absl::StatusOr<const json*> v = Find(names, &name);
    if (!v.ok()) return v.status();
    if (*v == nullptr) return absl::OkStatus();
    std::vector<std::string> allowed;
    for (const auto& [key, value] : choices) allowed.push_back(key);
    auto it = (*v)->is_string() ? choices.find((*v)->get<std::string>()) : choices.end();
    if (it == choices.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          Path(name), "=", (*v)->dump(), ": must be one of ", absl::StrJoin(allowed, ", ")));
    }
    *out = it->second;
    return absl::OkStatus();
  }

  absl::Status NoUnread(const std::set<std::string>& ignored) const {
    for (auto it = object_.begin(); it != object_.end(); ++it) {
      if (read_.count(it.key()) || ignored.count(it.key())) continue;
      return absl::InvalidArgumentError(absl::StrCat(Path(it.key()), ": unknown field"));
    }
    return absl::OkStatus();
  }

 private:
  absl::Status Missing(const std::vector<std::string>& names, bool required) const {
    if (!required) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(
        Path(names.front()), " is missing",
        names.size() > 1
            ? absl::StrCat(" (or ", absl::StrJoin(names.begin() + 1, names.end(), ", "), ")")
            : ""));
  }

  const json& object_;
  std::string path_;
  std::set<std::string> read_;
};

#define STAGEHAND_RETURN_IF_ERROR(expr) \
  do {                                  \
    absl::Status status_ = (expr);      \
    if (!status_.ok()) return status_;  \
  } while (false)

const std::map<std::string, AttentionKind>& AttentionKinds() {
  static const auto* kinds =
      new std::map<std::string, AttentionKind>{{"causal", AttentionKind::kCausal},
                                               {"none", AttentionKind::kNone},
                                               {"linear", AttentionKind::kLinear}};
  return *kinds;
}

const std::map<std::string, MlpKind>& MlpKinds() {
  static const auto* kinds = new std::map<std::string, MlpKind>{{"dense", MlpKind::kDense},
                                                                {"none", MlpKind::kNone},
                                                                {"linear", MlpKind::kLinear},
                                                                {"moe", MlpKind::kMoe}};
  return *kinds;
}

// "attention": "causal" or {"kind": "causal", "n_kv_heads": 2}.
absl::Status ParseAttention(const json& j, const std::string& path, LayerSpec* layer) {
  if (j.is_string()) {
    return Fields(json::object({{"kind", j}}), path)
        .Choice({"kind"}, AttentionKinds(), &layer->attention);
  }
  if (!j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, "=", j.dump(), ": must be a kind or an object with a kind"));
  }
  Fields f(j, path);
  STAGEHAND_RETURN_IF_ERROR(f.Choice({"kind"}, AttentionKinds(), &layer->attention));
  STAGEHAND_RETURN_IF_ERROR(
      f.Int({"n_kv_heads", "num_key_value_heads"}, &layer->num_kv_heads, false));
  return f.NoUnread({});
}

// The MoE settings of an "mlp": {"kind": "moe", ...} object or of the model-wide "moe" object,
// over `*moe` (the model-wide ones, for a layer). Hugging Face (Mixtral / Qwen-MoE) aliases.
absl::Status ParseMoeFields(Fields& f, MoeSpec* moe) {
  STAGEHAND_RETURN_IF_ERROR(f.Int({"num_experts", "num_local_experts"}, &moe->num_experts, false));
  STAGEHAND_RETURN_IF_ERROR(f.Int({"top_k", "num_experts_per_tok"}, &moe->top_k, false));
  STAGEHAND_RETURN_IF_ERROR(
      f.Int({"ffn_hidden", "moe_ffn_hidden", "moe_intermediate_size"}, &moe->ffn_hidden, false));
  STAGEHAND_RETURN_IF_ERROR(f.Int({"shared_expert_ffn", "shared_expert_intermediate_size"},
                                  &moe->shared_expert_ffn, false));
  double capacity = -1.0;
  STAGEHAND_RETURN_IF_ERROR(f.Double({"capacity_factor"}, &capacity));
  bool dropless = capacity < 0.0;
  std::string name;
  absl::StatusOr<const json*> given = f.Find({"dropless"}, &name);
  STAGEHAND_RETURN_IF_ERROR(given.status());
  if (*given != nullptr) {
    STAGEHAND_RETURN_IF_ERROR(f.Bool({"dropless"}, &dropless));
    if (dropless == (capacity >= 0.0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          f.Path("dropless"), "=", dropless ? "true" : "false", " and ", f.Path("capacity_factor"),
          capacity >= 0.0 ? absl::StrCat("=", capacity) : " (absent)",
          ": give a capacity_factor, or dropless: true, not both"));
    }
  }
  if (capacity >= 0.0) {
    if (capacity == 0.0) {
      return absl::InvalidArgumentError(absl::StrCat(
          f.Path("capacity_factor"), "=0: must be positive (use dropless: true for no capacity)"));
    }
    moe->capacity_factor = capacity;
  } else if (*given != nullptr) {
    moe->capacity_factor = 0.0;
  }
  STAGEHAND_RETURN_IF_ERROR(
      f.Double({"aux_loss_coeff", "router_aux_loss_coef"}, &moe->aux_loss_coeff));
  STAGEHAND_RETURN_IF_ERROR(f.Double({"z_loss_coeff", "router_z_loss_coef"}, &moe->z_loss_coeff));
  return absl::OkStatus();
}

// "mlp": "dense" or {"kind": "dense", "ffn_hidden": 320} or {"kind": "dense", "ffn_mult": 2.5};
// "moe" (the model-wide "moe" settings) or {"kind": "moe", "num_experts": 8, "top_k": 2, ...}.
absl::Status ParseMlp(const json& j, const std::string& path, int d_model,
                      const MoeSpec& moe_defaults, LayerSpec* layer) {
  if (j.is_string()) {
    STAGEHAND_RETURN_IF_ERROR(
        Fields(json::object({{"kind", j}}), path).Choice({"kind"}, MlpKinds(), &layer->mlp));
    if (layer->mlp == MlpKind::kMoe) layer->moe = moe_defaults;
    return absl::OkStatus();
  }
  if (!j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, "=", j.dump(), ": must be a kind or an object with a kind"));
  }
  Fields f(j, path);
  STAGEHAND_RETURN_IF_ERROR(f.Choice({"kind"}, MlpKinds(), &layer->mlp));
  if (layer->mlp == MlpKind::kMoe) {
    layer->moe = moe_defaults;
    STAGEHAND_RETURN_IF_ERROR(ParseMoeFields(f, &layer->moe));
    return f.NoUnread({});
  }
  STAGEHAND_RETURN_IF_ERROR(f.Int({"ffn_hidden", "intermediate_size"}, &layer->ffn_hidden, false));
  double mult = 0.0;
  STAGEHAND_RETURN_IF_ERROR(f.Double({"ffn_mult"}, &mult));
  if (mult != 0.0) {
    if (layer->ffn_hidden != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": give ffn_hidden or ffn_mult, not both"));
    }
    if (!(mult > 0.0 && mult <= 64.0)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ".ffn_mult=", mult, ": must be in (0, 64]"));
    }
    layer->ffn_hidden = std::max(1, static_cast<int>(std::lround(mult * d_model)));
  }
  return f.NoUnread({});
}

absl::Status ParseLayers(const json& list, const std::string& key, const GptConfig& config,
                         const LayerSpec& defaults, std::vector<LayerSpec>* layers) {
  if (!list.is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(key, ": must be a list of layers"));
  }
  if (list.size() > static_cast<size_t>(kMaxLayers)) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, ": ", list.size(), " layers, at most ", kMaxLayers));
  }
  layers->clear();
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string path = absl::StrCat(key, "[", i, "]");
    if (!list[i].is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, "=", list[i].dump(), ": must be an object with attention and mlp"));
    }
    LayerSpec layer;
    Fields f(list[i], path);
    std::string name;
    absl::StatusOr<const json*> attention = f.Find({"attention"}, &name);
    STAGEHAND_RETURN_IF_ERROR(attention.status());
    if (*attention != nullptr) {
      STAGEHAND_RETURN_IF_ERROR(ParseAttention(**attention, path + ".attention", &layer));
    }
    absl::StatusOr<const json*> mlp = f.Find({"mlp"}, &name);
    STAGEHAND_RETURN_IF_ERROR(mlp.status());
    if (*mlp != nullptr) {
      STAGEHAND_RETURN_IF_ERROR(
          ParseMlp(**mlp, path + ".mlp", config.d_model, defaults.moe, &layer));
    }
    STAGEHAND_RETURN_IF_ERROR(f.NoUnread({}));
    if (layer.attention == AttentionKind::kCausal && layer.num_kv_heads == 0) {
      layer.num_kv_heads = defaults.num_kv_heads;
    }
    if (layer.mlp == MlpKind::kDense && layer.ffn_hidden == 0) {
      layer.ffn_hidden = defaults.ffn_hidden;
    }
    layers->push_back(layer);
  }
  return absl::OkStatus();
}

absl::Status ParseSizes(Fields& f, GptConfig* c, int* num_layers) {
  STAGEHAND_RETURN_IF_ERROR(f.Int({"vocab_size"}, &c->vocab_size, true));
  STAGEHAND_RETURN_IF_ERROR(f.Int({"d_model", "hidden_size", "n_embd"}, &c->d_model, true));
  STAGEHAND_RETURN_IF_ERROR(
      f.Int({"num_heads", "num_attention_heads", "n_head"}, &c->num_heads, true));
  STAGEHAND_RETURN_IF_ERROR(
      f.Int({"max_seq_len", "max_position_embeddings", "n_positions"}, &c->max_seq_len, true));
  STAGEHAND_RETURN_IF_ERROR(
      f.Int({"num_layers", "num_hidden_layers", "n_layer"}, num_layers, false));
  return f.Seed(&c->seed);
}

absl::Status ParseOptions(Fields& f, GptConfig* c) {
  STAGEHAND_RETURN_IF_ERROR(f.Choice<NormKind>(
      {"norm"}, {{"layernorm", NormKind::kLayerNorm}, {"rmsnorm", NormKind::kRmsNorm}}, &c->norm));
  STAGEHAND_RETURN_IF_ERROR(
      f.Double({"norm_eps", "rms_norm_eps", "layer_norm_epsilon"}, &c->norm_eps));
  STAGEHAND_RETURN_IF_ERROR(f.Choice<ActivationKind>({"activation", "hidden_act"},
                                                     {{"gelu", ActivationKind::kGelu},
                                                      {"gelu_new", ActivationKind::kGelu},
                                                      {"gelu_pytorch_tanh", ActivationKind::kGelu},
                                                      {"swiglu", ActivationKind::kSwiGlu},
                                                      {"silu", ActivationKind::kSwiGlu}},
                                                     &c->activation));
  STAGEHAND_RETURN_IF_ERROR(f.Choice<PositionKind>(
      {"positions"}, {{"learned", PositionKind::kLearned}, {"rope", PositionKind::kRope}},
      &c->positions));
  STAGEHAND_RETURN_IF_ERROR(f.Double({"rope_base", "rope_theta"}, &c->rope_base));
  STAGEHAND_RETURN_IF_ERROR(f.Bool({"tied_head", "tie_word_embeddings"}, &c->tied_head));
  STAGEHAND_RETURN_IF_ERROR(f.Bool({"bias", "attention_bias", "mlp_bias"}, &c->bias));
  return absl::OkStatus();
}

// Model-wide defaults by model_type: GPT-2's (absent or "gpt2") or Llama's.
absl::Status ApplyModelType(Fields& f, GptConfig* c) {
  std::string type = "gpt2";
  STAGEHAND_RETURN_IF_ERROR(
      f.Choice<std::string>({"model_type"}, {{"gpt2", "gpt2"}, {"llama", "llama"}}, &type));
  if (type == "llama") {
    c->norm = NormKind::kRmsNorm;
    c->norm_eps = 1e-6;
    c->activation = ActivationKind::kSwiGlu;
    c->positions = PositionKind::kRope;
    c->tied_head = false;
    c->bias = false;
  }
  return absl::OkStatus();
}

absl::StatusOr<GptConfig> Parse(const json& j) {
  if (!j.is_object()) return absl::InvalidArgumentError("a model config must be a JSON object");
  GptConfig c;
  Fields f(j, "");
  int num_layers = 0;
  STAGEHAND_RETURN_IF_ERROR(ApplyModelType(f, &c));
  STAGEHAND_RETURN_IF_ERROR(ParseSizes(f, &c, &num_layers));
  STAGEHAND_RETURN_IF_ERROR(ParseOptions(f, &c));
  LayerSpec defaults;
  STAGEHAND_RETURN_IF_ERROR(
      f.Int({"n_kv_heads", "num_key_value_heads"}, &defaults.num_kv_heads, false));
  STAGEHAND_RETURN_IF_ERROR(
      f.Int({"ffn_hidden", "intermediate_size", "n_inner"}, &defaults.ffn_hidden, false));
  // "moe": {...}: the MoE settings of layers whose mlp is "moe"; without a layers list, every
  // layer is one.
  std::string key;
  absl::StatusOr<const json*> moe = f.Find({"moe"}, &key);
  STAGEHAND_RETURN_IF_ERROR(moe.status());
  if (*moe != nullptr) {
    if (!(*moe)->is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat("moe=", (*moe)->dump(), ": must be an object of MoE settings"));
    }
    Fields moe_fields(**moe, "moe");
    STAGEHAND_RETURN_IF_ERROR(ParseMoeFields(moe_fields, &defaults.moe));
    STAGEHAND_RETURN_IF_ERROR(moe_fields.NoUnread({}));
  }
  absl::StatusOr<const json*> list = f.Find({"layers", "block_configs"}, &key);
  STAGEHAND_RETURN_IF_ERROR(list.status());
  if (*list != nullptr) {
    STAGEHAND_RETURN_IF_ERROR(ParseLayers(**list, key, c, defaults, &c.layers));
    if (num_layers != 0 && num_layers != static_cast<int>(c.layers.size())) {
      return absl::InvalidArgumentError(absl::StrCat("num_layers=", num_layers, " but ", key,
                                                     " lists ", c.layers.size(), " layers"));
    }
  } else {
    if (num_layers <= 0 || num_layers > kMaxLayers) {
      return absl::InvalidArgumentError(absl::StrCat("num_layers=", num_layers, ": give 1 to ",
                                                     kMaxLayers, " layers, or a layers list"));
    }
    LayerSpec uniform = defaults;
    if (*moe != nullptr) uniform.mlp = MlpKind::kMoe;
    if (*moe == nullptr) uniform.moe = MoeSpec{};
    c.layers.assign(num_layers, uniform);
  }
  for (LayerSpec& l : c.layers) {
    if (l.mlp != MlpKind::kMoe) l.moe = MoeSpec{};
  }
  STAGEHAND_RETURN_IF_ERROR(f.NoUnread(IgnoredHuggingFaceKeys()));
  // Canonical: the default widths are stored as 0.
  for (LayerSpec& l : c.layers) {
    if (l.num_kv_heads == c.num_heads) l.num_kv_heads = 0;
    if (l.ffn_hidden == 4 * c.d_model) l.ffn_hidden = 0;
    if (l.moe.ffn_hidden == 4 * c.d_model) l.moe.ffn_hidden = 0;
  }
  STAGEHAND_RETURN_IF_ERROR(ValidateGptConfig(c));
  return c;
}

const char* Name(AttentionKind k) {
  switch (k) {
    case AttentionKind::kCausal:
      return "causal";
    case AttentionKind::kNone:
      return "none";
    case AttentionKind::kLinear:
      return "linear";
  }
  return "?";
}

const char* Name(MlpKind k) {
  switch (k) {
    case MlpKind::kDense:
      return "dense";
    case MlpKind::kNone:
      return "none";
    case MlpKind::kLinear:
      return "linear";
    case MlpKind::kMoe:
      return "moe";
  }
  return "?";
}

json MoeToJson(const MoeSpec& m) {
  json j = {{"kind", "moe"},
            {"num_experts", m.num_experts},
            {"top_k", m.top_k},
            {"aux_loss_coeff", m.aux_loss_coeff},
            {"z_loss_coeff", m.z_loss_coeff}};
  if (m.ffn_hidden > 0) j["ffn_hidden"] = m.ffn_hidden;
  if (m.shared_expert_ffn > 0) j["shared_expert_ffn"] = m.shared_expert_ffn;
  if (m.capacity_factor > 0) {
    j["capacity_factor"] = m.capacity_factor;
  } else {
    j["dropless"] = true;
  }
  return j;
}

}  // namespace

absl::StatusOr<GptConfig> ModelConfigFromJson(const json& j, const std::string& source) {
  absl::StatusOr<GptConfig> config = Parse(j);
  if (!config.ok()) {
    return absl::Status(config.status().code(),
                        absl::StrCat(source, ": ", config.status().message()));
  }
  return config;
}

absl::StatusOr<GptConfig> LoadModelConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open model config ", path));
  constexpr std::streamsize kMaxBytes = 16 << 20;
  std::string text(kMaxBytes + 1, '\0');
  in.read(text.data(), kMaxBytes + 1);
  text.resize(in.gcount());
  if (static_cast<std::streamsize>(text.size()) > kMaxBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": larger than 16 MiB; not a model config"));
  }
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(path, ": not valid JSON"));
  return ModelConfigFromJson(j, path);
}

json ModelConfigToJson(const GptConfig& c) {
  json layers = json::array();
  for (const LayerSpec& l : c.layers) {
    json attention = Name(l.attention), mlp = Name(l.mlp);
    if (l.num_kv_heads > 0)
      attention = {{"kind", Name(l.attention)}, {"n_kv_heads", l.num_kv_heads}};
    if (l.ffn_hidden > 0) mlp = {{"kind", Name(l.mlp)}, {"ffn_hidden", l.ffn_hidden}};
    if (l.mlp == MlpKind::kMoe) mlp = MoeToJson(l.moe);
    layers.push_back({{"attention", attention}, {"mlp", mlp}});
  }
  json j = {{"vocab_size", c.vocab_size},
            {"max_seq_len", c.max_seq_len},
            {"d_model", c.d_model},
            {"num_heads", c.num_heads},
            {"seed", c.seed},
            {"layers", layers}};
  const GptConfig gpt2;
  if (c.norm != gpt2.norm) j["norm"] = "rmsnorm";
  if (c.norm_eps != gpt2.norm_eps) j["norm_eps"] = c.norm_eps;
  if (c.activation != gpt2.activation) j["activation"] = "swiglu";
  if (c.positions != gpt2.positions) j["positions"] = "rope";
  if (c.rope_base != gpt2.rope_base) j["rope_base"] = c.rope_base;
  if (c.tied_head != gpt2.tied_head) j["tied_head"] = c.tied_head;
  if (c.bias != gpt2.bias) j["bias"] = c.bias;
  return j;
}

std::string DescribeModel(const GptConfig& c) {
  std::map<std::string, int> kinds;
  std::vector<std::string> order;
  for (const LayerSpec& l : c.layers) {
    const std::string kind = LayerSpecToString(l);
    if (kinds[kind]++ == 0) order.push_back(kind);
  }
  std::vector<std::string> parts;
  for (const std::string& kind : order) parts.push_back(absl::StrCat(kind, " x", kinds[kind]));
  return absl::StrFormat(
      "%d layers (%s), d_model %d, %d heads, %s, %s, %s positions, %s head, %.1fM parameters",
      c.layers.size(), absl::StrJoin(parts, ", "), c.d_model, c.num_heads,
      c.norm == NormKind::kLayerNorm ? "layernorm" : "rmsnorm",
      c.activation == ActivationKind::kGelu ? "gelu" : "swiglu",
      c.positions == PositionKind::kLearned ? "learned" : "rope", c.tied_head ? "tied" : "untied",
      GptParameterBound(c) / 1e6);
}

}  // namespace stagehand::models
