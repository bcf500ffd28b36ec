// The GPT model's structure: sizes and a per-layer spec (attention kind, MLP kind), and its
// validation. Not the implementation: GptChunk builds the model from this description.
#ifndef STAGEHAND_MODELS_GPT_CONFIG_H_
#define STAGEHAND_MODELS_GPT_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace stagehand::models {

// kLinear replaces the part by one C -> C linear (Nemotron's replace_with_linear).
enum class AttentionKind { kCausal, kNone, kLinear };
enum class MlpKind { kDense, kNone, kLinear, kMoe };
enum class NormKind { kLayerNorm, kRmsNorm };
enum class ActivationKind { kGelu, kSwiGlu };  // SwiGLU: the MLP's first linear is 2 x ffn wide
enum class PositionKind { kLearned, kRope };

// A mixture-of-experts MLP (MlpKind::kMoe): a router (linear, softmax, top-k) sends each token
// to top_k of num_experts expert MLPs and sums their outputs weighted by the router's
// probabilities; an optional shared expert sees every token. Switch / GShard style.
struct MoeSpec {
  int num_experts = 0;           // E
  int top_k = 1;                 // K: experts per token
  int ffn_hidden = 0;            // each expert's hidden width; 0: 4 x d_model
  int shared_expert_ffn = 0;     // the shared expert's hidden width; 0: no shared expert
  double capacity_factor = 0.0;  // rows per expert: ceil(factor N K / E), extra choices
                                 // dropped in token order; 0: dropless
  double aux_loss_coeff = 0.0;   // load-balancing loss E sum_e f_e P_e, per layer
  double z_loss_coeff = 0.0;     // router z-loss mean logsumexp^2, per layer
  bool operator==(const MoeSpec& o) const {
    return num_experts == o.num_experts && top_k == o.top_k && ffn_hidden == o.ffn_hidden &&
           shared_expert_ffn == o.shared_expert_ffn && capacity_factor == o.capacity_factor &&
           aux_loss_coeff == o.aux_loss_coeff && z_loss_coeff == o.z_loss_coeff;
  }
};

// One transformer block: x += attn(norm_1(x)); x += mlp(norm_2(x)). A kNone part is skipped
// (with its norm), so heterogeneous stacks can be described.
struct LayerSpec {
  AttentionKind attention = AttentionKind::kCausal;
  MlpKind mlp = MlpKind::kDense;
  int num_kv_heads = 0;  // grouped-query attention; 0: num_heads (multi-head attention)
  int ffn_hidden = 0;    // the MLP's hidden width; 0: 4 x d_model
  MoeSpec moe;           // mlp == kMoe only
};

struct GptConfig {
  int vocab_size = 256;  // V
  int max_seq_len = 64;  // maxT (rows of wpe; the longest sequence)
  int d_model = 128;     // C
  int num_heads = 4;     // NH
  std::vector<LayerSpec> layers = std::vector<LayerSpec>(4);  // L
  uint64_t seed = 1337;                                       // initialisation
  // Model-wide options; the defaults are GPT-2's.
  NormKind norm = NormKind::kLayerNorm;
  double norm_eps = 1e-5;  // RMSNorm's epsilon (LayerNorm's is fixed at GPT-2's 1e-5)
  ActivationKind activation = ActivationKind::kGelu;
  PositionKind positions = PositionKind::kLearned;
  double rope_base = 10000.0;  // RoPE's theta
  bool tied_head = true;       // the head reuses wte; false: its own lm_head.weight (V, C)
  bool bias = true;            // biases in linears and LayerNorms (Llama has none)

  int head_size() const { return num_heads > 0 ? d_model / num_heads : 0; }
  int KvHeads(const LayerSpec& l) const { return l.num_kv_heads > 0 ? l.num_kv_heads : num_heads; }
  int FfnHidden(const LayerSpec& l) const { return l.ffn_hidden > 0 ? l.ffn_hidden : 4 * d_model; }
  // Width of the fused qkv projection's output: (NH + 2 NKV) x head size.
  int64_t QkvWidth(const LayerSpec& l) const {
    return int64_t{num_heads + 2 * KvHeads(l)} * head_size();
  }
  // Width of the MLP's first linear: ffn, or 2 ffn for SwiGLU ([gate | up]).
  int64_t FcWidth(const LayerSpec& l) const { return FcWidthOf(FfnHidden(l)); }
  // An MoE layer's expert width (0: 4 x d_model).
  int ExpertFfn(const LayerSpec& l) const {
    return l.moe.ffn_hidden > 0 ? l.moe.ffn_hidden : 4 * d_model;
  }
  int64_t FcWidthOf(int ffn) const {
    return int64_t{ffn} * (activation == ActivationKind::kSwiGlu ? 2 : 1);
  }
};

// A uniform stack of `num_layers` causal-attention + dense-MLP blocks.
GptConfig UniformGpt(int num_layers, int d_model, int num_heads, int vocab_size, int max_seq_len,
                     uint64_t seed);

// GPT-2 small (124M): 12 layers, width 768, 12 heads, vocabulary 50257, context 1024.
GptConfig Gpt2Small(uint64_t seed);

// Limits that keep every element count inside the kernels' indices and refuse models no
// machine holds, before anything is allocated.
inline constexpr int64_t kMaxLayers = 4096;
inline constexpr int64_t kMaxDModel = 65536;
inline constexpr int64_t kMaxVocabSize = 1 << 24;
inline constexpr int64_t kMaxSeqLen = 1 << 20;
inline constexpr int64_t kMaxParameters = int64_t{1} << 34;  // 64 GiB of float32

// The parameter count (tied weights counted once), in 64 bits; meaningful for configs whose
// fields are within the limits above.
int64_t GptParameterBound(const GptConfig& config);

// OK, or InvalidArgument naming the bad field as a model config file names it
// ("layers[7].attention.n_kv_heads=3 does not divide num_heads=8") and its value.
absl::Status ValidateGptConfig(const GptConfig& config);

// "attn+mlp", "no-attn+mlp", "linear-attn+mlp", "attn(kv=2)+mlp(ffn=320)",
// "attn+moe(e=8,k=2,ffn=64,shared=64,cf=1.25)", ...
std::string LayerSpecToString(const LayerSpec& spec);

}  // namespace stagehand::models

#endif  // STAGEHAND_MODELS_GPT_CONFIG_H_
