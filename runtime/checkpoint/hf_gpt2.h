// Hugging Face GPT-2 safetensors: our parameters under transformers' GPT2Model names
// ("wte.weight", "h.0.attn.c_attn.weight", ...) with Conv1D weights stored (in, out), i.e.
// our (out, in) linear weights transposed; and the way back, for --init_from.
// Not a converter for other architectures or dtypes: GPT-2 blocks, float32 only.
#ifndef STAGEHAND_RUNTIME_CHECKPOINT_HF_GPT2_H_
#define STAGEHAND_RUNTIME_CHECKPOINT_HF_GPT2_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/io/safetensors.h"
#include "runtime/train/training.h"

namespace stagehand::runtime {

// Our name -> the Hugging Face name ("wte" -> "wte.weight"; others keep theirs).
std::string HfGpt2Name(const std::string& name);
// True for the linear weights that transformers stores as Conv1D (transposed).
bool IsHfConv1DWeight(const std::string& name);

// Our tensors (CollectParameters) renamed and transposed for transformers.
std::vector<NamedTensor> ToHfGpt2(const std::vector<NamedTensor>& ours);

// The way back. Accepts GPT2LMHeadModel files too: a "transformer." prefix is dropped, and
// so are the attention-mask buffers (attn.bias, attn.masked_bias) and lm_head.weight (tied
// to wte). InvalidArgument for a Conv1D weight that is not two-dimensional.
absl::StatusOr<std::map<std::string, NamedTensor>> FromHfGpt2(
    std::map<std::string, NamedTensor> hf);

// Writes every parameter of `chunks` as a Hugging Face GPT-2 safetensors file (atomically).
absl::Status ExportHfGpt2(const std::string& path, const std::vector<Chunk*>& chunks);
// Sets every parameter of `chunks` from such a file; errors name the missing or misshapen tensor.
absl::Status ImportHfGpt2(const std::string& path, const std::vector<Chunk*>& chunks);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_CHECKPOINT_HF_GPT2_H_
