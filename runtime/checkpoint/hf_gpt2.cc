// GPT-2 name mapping and Conv1D transposes between our layout and transformers'.
#include "runtime/checkpoint/hf_gpt2.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace stagehand::runtime {
namespace {

// (R, C) row-major -> (C, R) row-major.
NamedTensor Transposed(const NamedTensor& t, std::string name) {
  const int64_t rows = t.shape[0], cols = t.shape[1];
  NamedTensor out{std::move(name), {cols, rows}, std::vector<float>(t.data.size())};
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) out.data[c * rows + r] = t.data[r * cols + c];
  }
  return out;
}

}  // namespace

std::string HfGpt2Name(const std::string& name) {
  if (name == "wte" || name == "wpe") return name + ".weight";
  return name;
}

bool IsHfConv1DWeight(const std::string& name) {
  return absl::StartsWith(name, "h.") &&
         (absl::EndsWith(name, ".attn.c_attn.weight") ||
          absl::EndsWith(name, ".attn.c_proj.weight") || absl::EndsWith(name, ".mlp.c_fc.weight") ||
          absl::EndsWith(name, ".mlp.c_proj.weight"));
}

std::vector<NamedTensor> ToHfGpt2(const std::vector<NamedTensor>& ours) {
  std::vector<NamedTensor> out;
  for (const NamedTensor& t : ours) {
    const std::string name = HfGpt2Name(t.name);
    out.push_back(IsHfConv1DWeight(t.name) && t.shape.size() == 2
                      ? Transposed(t, name)
                      : NamedTensor{name, t.shape, t.data});
  }
  return out;
}

absl::StatusOr<std::map<std::string, NamedTensor>> FromHfGpt2(
    std::map<std::string, NamedTensor> hf) {
  std::map<std::string, NamedTensor> out;
  for (auto& [hf_name, tensor] : hf) {
    std::string name = hf_name;
    if (absl::StartsWith(name, "transformer.")) name = name.substr(12);
    if (name == "lm_head.weight" || absl::EndsWith(name, ".attn.bias") ||
        absl::EndsWith(name, ".attn.masked_bias")) {
      continue;
    }
    if (name == "wte.weight" || name == "wpe.weight") name = name.substr(0, 3);
    if (IsHfConv1DWeight(name)) {
      if (tensor.shape.size() != 2) {
        return absl::InvalidArgumentError(absl::StrCat("Conv1D weight ", hf_name, " has ",
                                                       tensor.shape.size(), " dimensions, not 2"));
      }
      out[name] = Transposed(tensor, name);
    } else {
      tensor.name = name;
      out[name] = std::move(tensor);
    }
  }
  return out;
}

absl::Status ExportHfGpt2(const std::string& path, const std::vector<Chunk*>& chunks) {
  return WriteSafetensors(path, ToHfGpt2(CollectParameters(chunks)));
}

absl::Status ImportHfGpt2(const std::string& path, const std::vector<Chunk*>& chunks) {
  absl::StatusOr<std::map<std::string, NamedTensor>> hf = ReadSafetensors(path);
  if (!hf.ok()) return hf.status();
  absl::StatusOr<std::map<std::string, NamedTensor>> ours = FromHfGpt2(std::move(*hf));
  if (!ours.ok()) return ours.status();
  if (absl::Status s = AssignParameters(chunks, *ours); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", s.message()));
  }
  return absl::OkStatus();
}

}  // namespace stagehand::runtime
