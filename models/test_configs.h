// Small model configs shared by tests (testonly): a Llama-style stack, one mixing every
// block kind and a small MoE stack, at sizes a float64 finite-difference check or a parity run can
// afford.
#ifndef STAGEHAND_MODELS_TEST_CONFIGS_H_
#define STAGEHAND_MODELS_TEST_CONFIGS_H_

#include "models/gpt_config.h"

namespace stagehand::models::testing {

// RMSNorm (1e-6), SwiGLU, RoPE (base 500), untied head, no biases, every layer with
// `kv_heads` key/value heads and an MLP `ffn` wide. Vocabulary 256.
inline GptConfig LlamaStyle(int layers, int d_model, int heads, int kv_heads, int ffn,
                            int max_seq_len, uint64_t seed) {
  GptConfig c = UniformGpt(layers, d_model, heads, 256, max_seq_len, seed);
  c.norm = NormKind::kRmsNorm;
  c.norm_eps = 1e-6;
  c.activation = ActivationKind::kSwiGlu;
  c.positions = PositionKind::kRope;
  c.rope_base = 500.0;
  c.tied_head = false;
  c.bias = false;
  for (LayerSpec& l : c.layers) {
    l.num_kv_heads = kv_heads;
    l.ffn_hidden = ffn;
  }
  return c;
}

// At least 4 layers: GQA with a narrow MLP, linear replacements of both parts, a layer
// without MLP and one without attention; LayerNorm, GELU, RoPE, tied head, biases.
inline GptConfig MixedBlocks(int layers, int d_model, int heads, int max_seq_len, uint64_t seed) {
  GptConfig c = UniformGpt(layers, d_model, heads, 256, max_seq_len, seed);
  c.positions = PositionKind::kRope;
  c.layers[0].num_kv_heads = 1;
  c.layers[0].ffn_hidden = d_model - 2;
  c.layers[1].attention = AttentionKind::kLinear;
  c.layers[1].mlp = MlpKind::kLinear;
  c.layers[2].mlp = MlpKind::kNone;
  c.layers[3].attention = AttentionKind::kNone;
  return c;
}

// Three GPT-2 layers (d_model 8, 2 heads); layer 1 MoE with 4 top-1 experts 6 wide and a
// shared expert 5 wide, layer 2 MoE with 2 experts: small enough to split the experts over 2
// or 4 members and check every tensor.
inline GptConfig SmallMoe() {
  GptConfig c = UniformGpt(3, 8, 2, 256, 8, 7);
  for (int l : {1, 2}) {
    c.layers[l].mlp = MlpKind::kMoe;
    c.layers[l].ffn_hidden = 0;
    c.layers[l].moe = MoeSpec{l == 1 ? 4 : 2, 1, 6, l == 1 ? 5 : 0, 0.0, 0.01, 0.0};
  }
  return c;
}

}  // namespace stagehand::models::testing

#endif  // STAGEHAND_MODELS_TEST_CONFIGS_H_
