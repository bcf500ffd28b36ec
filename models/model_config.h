// Model config files: the JSON a user writes to describe a model (--model_config), and the
// form checkpoints record. Sizes follow Hugging Face config.json names where one exists
// (hidden_size, num_attention_heads, num_key_value_heads, intermediate_size, rms_norm_eps,
// rope_theta, tie_word_embeddings, ...) or our own (d_model, num_heads, ...); a per-layer list
// in the spirit of Megatron's heterogeneous block_configs says what each layer is. Every bad
// field is an error naming its path: "layers[7].attention.n_kv_heads=3 does not divide
// num_heads=8". Unknown fields are errors, except the Hugging Face keys that describe nothing
// we build (bos_token_id, torch_dtype, ...), which are ignored.
#ifndef STAGEHAND_MODELS_MODEL_CONFIG_H_
#define STAGEHAND_MODELS_MODEL_CONFIG_H_

#include <string>

#include "absl/status/statusor.h"
#include "models/gpt_config.h"
#include "nlohmann/json.hpp"

namespace stagehand::models {

// Parses a config. `source` (a file name) prefixes every error. Missing model-wide options
// take GPT-2's values, or Llama's when "model_type" is "llama".
absl::StatusOr<GptConfig> ModelConfigFromJson(const nlohmann::json& json,
                                              const std::string& source);
// Reads and parses FILE (at most 16 MiB).
absl::StatusOr<GptConfig> LoadModelConfig(const std::string& path);

// The canonical form (what checkpoints record): our names, one entry per layer, and the
// model-wide options only where they differ from GPT-2's, so a GPT-2 config writes exactly
// {vocab_size, max_seq_len, d_model, num_heads, seed, layers}. Round-trips through
// ModelConfigFromJson.
nlohmann::json ModelConfigToJson(const GptConfig& config);

// One line for logs: "12 layers (attn+mlp x12), d_model 768, 12 heads, layernorm, gelu,
// learned positions, tied head, 124.4M parameters".
std::string DescribeModel(const GptConfig& config);

}  // namespace stagehand::models

#endif  // STAGEHAND_MODELS_MODEL_CONFIG_H_
