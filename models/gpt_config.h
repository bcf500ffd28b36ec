// The GPT model's structure: sizes and a per-layer spec (attention kind, MLP kind), and its
// validation. Not the implementation: GptChunk builds the model from this description.
#ifndef STAGEHAND_MODELS_GPT_CONFIG_H_
#define STAGEHAND_MODELS_GPT_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace stagehand::models {

enum class AttentionKind { kCausal, kNone };
enum class MlpKind { kDense, kNone };

// One transformer block: x += attn(ln_1(x)); x += mlp(ln_2(x)). A kNone part is skipped
// (with its LayerNorm), so heterogeneous stacks can be described.
struct LayerSpec {
  AttentionKind attention = AttentionKind::kCausal;
  MlpKind mlp = MlpKind::kDense;
};

struct GptConfig {
  int vocab_size = 256;  // V
  int max_seq_len = 64;  // maxT (rows of wpe)
  int d_model = 128;     // C
  int num_heads = 4;     // NH
  std::vector<LayerSpec> layers = std::vector<LayerSpec>(4);  // L
  uint64_t seed = 1337;  // initialisation
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

// An upper bound of the parameter count (every layer with attention and MLP), in 64 bits;
// meaningful for configs whose fields are within the limits above.
int64_t GptParameterBound(const GptConfig& config);

// OK, or InvalidArgument naming the bad field and its value (or the limit it exceeds).
absl::Status ValidateGptConfig(const GptConfig& config);

std::string LayerSpecToString(const LayerSpec& spec);

}  // namespace stagehand::models

#endif  // STAGEHAND_MODELS_GPT_CONFIG_H_
