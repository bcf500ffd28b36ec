// Llama name mapping: our modules -> transformers' (splitting fused projections), and back.
#include "runtime/checkpoint/hf_llama.h"

#include <cstdlib>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "runtime/checkpoint/hf_gpt2.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {
namespace {

using models::GptConfig;
using models::LayerSpec;

// One piece of one of our tensors under a Hugging Face module name: `rows` rows (dimension 0)
// after those of the pieces before it.
struct Part {
  std::string hf_module;
  int64_t rows;
};

// Our per-layer modules, in the order CollectParameters lists them; MoE layers add the router,
// each expert's and the shared expert's linears.
std::vector<std::string> LayerModules(const LayerSpec& l) {
  std::vector<std::string> modules = {"ln_1", "attn.c_attn", "attn.c_proj", "attn.linear",
                                      "ln_2", "mlp.c_fc",    "mlp.c_proj",  "mlp.linear"};
  if (l.mlp != models::MlpKind::kMoe) return modules;
  modules.push_back("mlp.router");
  for (int e = 0; e < l.moe.num_experts; ++e) {
    modules.push_back(absl::StrCat("mlp.experts.", e, ".c_fc"));
    modules.push_back(absl::StrCat("mlp.experts.", e, ".c_proj"));
  }
  modules.push_back("mlp.shared_expert.c_fc");
  modules.push_back("mlp.shared_expert.c_proj");
  return modules;
}

// MoE modules under Mixtral's names (block_sparse_moe.gate, experts.E.w1 / w3 / w2: gate, up,
// down); the shared expert, which Mixtral lacks, under Qwen2-MoE's projection names. A GELU
// expert's one first linear is w1 (up_proj for the shared expert).
std::vector<Part> MoePartsOf(const std::string& module, const GptConfig& c, const LayerSpec& l) {
  if (l.mlp != models::MlpKind::kMoe) return {};
  if (module == "mlp.router") return {{"block_sparse_moe.gate", -1}};
  const bool swiglu = c.activation == models::ActivationKind::kSwiGlu;
  if (absl::StartsWith(module, "mlp.shared_expert.")) {
    const std::string m = "block_sparse_moe.shared_expert.";
    const int64_t ffn = l.moe.shared_expert_ffn;
    if (module == "mlp.shared_expert.c_proj") return {{m + "down_proj", -1}};
    if (module != "mlp.shared_expert.c_fc") return {};
    if (swiglu) return {{m + "gate_proj", ffn}, {m + "up_proj", ffn}};
    return {{m + "up_proj", -1}};
  }
  const std::vector<std::string> pieces = absl::StrSplit(module, '.');
  int e = -1;
  if (pieces.size() != 4 || pieces[0] != "mlp" || pieces[1] != "experts" ||
      !absl::SimpleAtoi(pieces[2], &e) || e < 0 || e >= l.moe.num_experts) {
    return {};
  }
  const std::string m = absl::StrCat("block_sparse_moe.experts.", e, ".");
  if (pieces[3] == "c_proj") return {{m + "w2", -1}};
  if (pieces[3] != "c_fc") return {};
  if (swiglu) return {{m + "w1", c.ExpertFfn(l)}, {m + "w3", c.ExpertFfn(l)}};
  return {{m + "w1", -1}};
}

// The Hugging Face pieces of our module `module` of layer `l`.
std::vector<Part> PartsOf(const std::string& module, const GptConfig& c, const LayerSpec& l) {
  const int64_t hs = c.head_size();
  if (module == "ln_1") return {{"input_layernorm", -1}};
  if (module == "ln_2") return {{"post_attention_layernorm", -1}};
  if (module == "attn.c_attn") {
    return {{"self_attn.q_proj", c.num_heads * hs},
            {"self_attn.k_proj", c.KvHeads(l) * hs},
            {"self_attn.v_proj", c.KvHeads(l) * hs}};
  }
  if (module == "attn.c_proj") return {{"self_attn.o_proj", -1}};
  if (module == "attn.linear") return {{"self_attn.linear_attn", -1}};
  if (module == "mlp.c_fc") {
    if (c.activation == models::ActivationKind::kSwiGlu) {
      return {{"mlp.gate_proj", c.FfnHidden(l)}, {"mlp.up_proj", c.FfnHidden(l)}};
    }
    return {{"mlp.up_proj", -1}};
  }
  if (module == "mlp.c_proj") return {{"mlp.down_proj", -1}};
  if (module == "mlp.linear") return {{"mlp.linear_mlp", -1}};
  return MoePartsOf(module, c, l);
}

// Non-layer tensors: ours <-> theirs.
const std::vector<std::pair<std::string, std::string>>& TopLevelNames() {
  static const auto* names =
      new std::vector<std::pair<std::string, std::string>>{{"wte", "model.embed_tokens.weight"},
                                                           {"wpe", "model.embed_positions.weight"},
                                                           {"ln_f.weight", "model.norm.weight"},
                                                           {"ln_f.bias", "model.norm.bias"},
                                                           {"lm_head.weight", "lm_head.weight"}};
  return *names;
}

// "h.3.attn.c_attn.weight" -> (3, "attn.c_attn", "weight").
bool SplitLayerName(const std::string& name, int* layer, std::string* module, std::string* param) {
  if (!absl::StartsWith(name, "h.")) return false;
  const size_t dot = name.find('.', 2);
  const size_t last = name.rfind('.');
  if (dot == std::string::npos || last <= dot) return false;
  if (!absl::SimpleAtoi(name.substr(2, dot - 2), layer)) return false;
  *module = name.substr(dot + 1, last - dot - 1);
  *param = name.substr(last + 1);
  return true;
}

int64_t RowWidth(const NamedTensor& t) {
  int64_t width = 1;
  for (size_t d = 1; d < t.shape.size(); ++d) width *= t.shape[d];
  return width;
}

absl::StatusOr<const LayerSpec*> Layer(const GptConfig& c, int layer, const std::string& name) {
  if (layer < 0 || layer >= static_cast<int>(c.layers.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": the model has ", c.layers.size(), " layers"));
  }
  return &c.layers[layer];
}

}  // namespace

bool UsesGpt2Names(const GptConfig& c) {
  const GptConfig gpt2;
  if (c.norm != gpt2.norm || c.activation != gpt2.activation || c.positions != gpt2.positions ||
      c.tied_head != gpt2.tied_head || c.bias != gpt2.bias) {
    return false;
  }
  for (const LayerSpec& l : c.layers) {
    if (l.attention == models::AttentionKind::kLinear || l.mlp == models::MlpKind::kLinear ||
        l.mlp == models::MlpKind::kMoe || l.num_kv_heads != 0 || l.ffn_hidden != 0) {
      return false;
    }
  }
  return true;
}

absl::StatusOr<std::vector<NamedTensor>> ToHfLlama(const std::vector<NamedTensor>& ours,
                                                   const GptConfig& c) {
  std::vector<NamedTensor> out;
  for (const NamedTensor& t : ours) {
    bool top = false;
    for (const auto& [mine, theirs] : TopLevelNames()) {
      if (t.name == mine) {
        out.push_back(NamedTensor{theirs, t.shape, t.data});
        top = true;
      }
    }
    if (top) continue;
    int layer = 0;
    std::string module, param;
    if (!SplitLayerName(t.name, &layer, &module, &param)) {
      return absl::InvalidArgumentError(absl::StrCat("no Llama name for tensor ", t.name));
    }
    ASSIGN_OR_RETURN(const LayerSpec* spec, Layer(c, layer, t.name));
    const std::vector<Part> parts = PartsOf(module, c, *spec);
    if (parts.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("no Llama name for tensor ", t.name));
    }
    const int64_t width = RowWidth(t);
    int64_t row = 0;
    for (const Part& part : parts) {
      const int64_t rows = part.rows < 0 ? t.shape[0] : part.rows;
      NamedTensor piece{
          absl::StrCat("model.layers.", layer, ".", part.hf_module, ".", param), t.shape, {}};
      piece.shape[0] = rows;
      piece.data.assign(t.data.begin() + row * width, t.data.begin() + (row + rows) * width);
      out.push_back(std::move(piece));
      row += rows;
    }
  }
  return out;
}

absl::StatusOr<std::map<std::string, NamedTensor>> FromHfLlama(
    std::map<std::string, NamedTensor> hf, const GptConfig& c) {
  std::map<std::string, NamedTensor> out;
  for (const auto& [mine, theirs] : TopLevelNames()) {
    auto it = hf.find(theirs);
    if (it == hf.end()) continue;
    out[mine] = NamedTensor{mine, it->second.shape, std::move(it->second.data)};
    hf.erase(it);
  }
  for (int layer = 0; layer < static_cast<int>(c.layers.size()); ++layer) {
    for (const std::string& module : LayerModules(c.layers[layer])) {
      for (const char* param : {"weight", "bias"}) {
        const std::vector<Part> parts = PartsOf(module, c, c.layers[layer]);
        NamedTensor fused{absl::StrCat("h.", layer, ".", module, ".", param), {}, {}};
        int found = 0;
        for (const Part& part : parts) {
          const std::string name =
              absl::StrCat("model.layers.", layer, ".", part.hf_module, ".", param);
          auto it = hf.find(name);
          if (it == hf.end()) continue;
          const NamedTensor& piece = it->second;
          if (piece.shape.empty() || (part.rows >= 0 && piece.shape[0] != part.rows)) {
            return absl::InvalidArgumentError(absl::StrCat(name, " has ",
                                                           piece.shape.empty() ? 0 : piece.shape[0],
                                                           " rows; the model needs ", part.rows));
          }
          if (found == 0)
            fused.shape = piece.shape;
          else
            fused.shape[0] += piece.shape[0];
          fused.data.insert(fused.data.end(), piece.data.begin(), piece.data.end());
          hf.erase(it);
          ++found;
        }
        if (found == 0) continue;  // AssignParameters names a tensor the model needs
        if (found != static_cast<int>(parts.size())) {
          return absl::InvalidArgumentError(
              absl::StrCat("only ", found, " of the ", parts.size(), " pieces of ", fused.name,
                           " (", parts.front().hf_module, ", ...) are in the file"));
        }
        out[fused.name] = std::move(fused);
      }
    }
  }
  for (const auto& [name, tensor] : hf) {
    if (absl::EndsWith(name, "rotary_emb.inv_freq")) continue;
    return absl::InvalidArgumentError(
        absl::StrCat("tensor ", name, " matches no parameter of this model"));
  }
  return out;
}

absl::StatusOr<std::map<std::string, NamedTensor>> FromHf(std::map<std::string, NamedTensor> hf,
                                                          const GptConfig& config) {
  if (UsesGpt2Names(config)) return FromHfGpt2(std::move(hf));
  return FromHfLlama(std::move(hf), config);
}

absl::Status ExportHf(const std::string& path, const std::vector<Chunk*>& chunks,
                      const GptConfig& config) {
  if (UsesGpt2Names(config)) return ExportHfGpt2(path, chunks);
  ASSIGN_OR_RETURN(std::vector<NamedTensor> tensors, ToHfLlama(CollectParameters(chunks), config));
  return WriteSafetensors(path, tensors);
}

absl::Status ImportHf(const std::string& path, const std::vector<Chunk*>& chunks,
                      const GptConfig& config) {
  if (UsesGpt2Names(config)) return ImportHfGpt2(path, chunks);
  ASSIGN_OR_RETURN(auto hf, ReadSafetensors(path));
  absl::StatusOr<std::map<std::string, NamedTensor>> ours = FromHf(std::move(hf), config);
  if (!ours.ok())
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", ours.status().message()));
  if (absl::Status s = AssignParameters(chunks, *ours); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", s.message()));
  }
  return absl::OkStatus();
}

}  // namespace stagehand::runtime
