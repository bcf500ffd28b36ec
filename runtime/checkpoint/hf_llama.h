// Hugging Face Llama safetensors: our parameters under transformers' LlamaForCausalLM names
// ("model.layers.N.self_attn.q_proj.weight", ...), for Llama-style and heterogeneous models;
// and the way back, for --init_from. The fused qkv projection is split into q/k/v_proj and a
// SwiGLU model's fused [gate | up] into gate_proj / up_proj (both nn.Linear (out, in), our
// layout: no transposes). Our RoPE is transformers' rotate_half form, so q/k need no
// permutation. Block kinds Llama lacks use DeciLM's names (self_attn.linear_attn,
// mlp.linear_mlp). MoE layers use Mixtral's names (block_sparse_moe.gate for the router,
// block_sparse_moe.experts.E.w1 / w3 / w2 for gate / up / down) and, for the shared expert,
// block_sparse_moe.shared_expert.gate_proj / up_proj / down_proj. Float32 only.
//
// ExportHf / ImportHf pick the naming by the model: GPT-2's (hf_gpt2.h) for GPT-2-style
// models, Llama's for every other.
#ifndef STAGEHAND_RUNTIME_CHECKPOINT_HF_LLAMA_H_
#define STAGEHAND_RUNTIME_CHECKPOINT_HF_LLAMA_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "models/gpt_config.h"
#include "runtime/io/safetensors.h"
#include "runtime/train/training.h"

namespace stagehand::runtime {

// True when GPT-2's names describe `config` exactly (LayerNorm, GELU, learned positions, tied
// head, biases, causal/dense or missing blocks of default widths).
bool UsesGpt2Names(const models::GptConfig& config);

// Our tensors (CollectParameters) under Llama names; errors for a tensor of an unknown name.
absl::StatusOr<std::vector<NamedTensor>> ToHfLlama(const std::vector<NamedTensor>& ours,
                                                   const models::GptConfig& config);
// The way back: every tensor of a Llama-named file under our names (q/k/v and gate/up fused
// again); errors name the missing or misshapen tensor. Unused rotary buffers
// (rotary_emb.inv_freq) are dropped.
absl::StatusOr<std::map<std::string, NamedTensor>> FromHfLlama(
    std::map<std::string, NamedTensor> hf, const models::GptConfig& config);

// A Hugging Face file's tensors under our names, in the naming UsesGpt2Names picks.
absl::StatusOr<std::map<std::string, NamedTensor>> FromHf(std::map<std::string, NamedTensor> hf,
                                                          const models::GptConfig& config);

// Writes / reads every parameter of `chunks` (holding `config`'s model) in the Hugging Face
// naming UsesGpt2Names picks.
absl::Status ExportHf(const std::string& path, const std::vector<Chunk*>& chunks,
                      const models::GptConfig& config);
absl::Status ImportHf(const std::string& path, const std::vector<Chunk*>& chunks,
                      const models::GptConfig& config);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_CHECKPOINT_HF_LLAMA_H_
