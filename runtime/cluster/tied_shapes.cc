// Tied tensors per stage and the check of tied gradients.
#include "runtime/cluster/tied_shapes.h"

#include "absl/strings/str_cat.h"

namespace stagehand::runtime {

TiedShapes StageTiedShapes(const StepSpec& spec, int stage, int64_t wte_floats) {
  TiedShapes shapes;
  if (spec.num_chunks < 2 || wte_floats == 0) return shapes;
  for (int chunk : {0, spec.num_chunks - 1}) {
    if (spec.chunk_to_stage[chunk] == stage) shapes[chunk]["wte"] = wte_floats;
  }
  return shapes;
}

std::string CheckTiedGradients(
    const std::map<int, std::map<std::string, std::vector<float>>>& grads,
    const TiedShapes& expected) {
  for (const auto& [chunk, tensors] : grads) {
    auto held = expected.find(chunk);
    if (held == expected.end()) return absl::StrCat("chunk ", chunk, " has no tied tensors here");
    for (const auto& [name, values] : tensors) {
      auto shape = held->second.find(name);
      if (shape == held->second.end())
        return absl::StrCat("chunk ", chunk, " has no tied tensor '", name, "'");
      if (static_cast<int64_t>(values.size()) != shape->second) {
        return absl::StrCat("tied gradient ", name, " of chunk ", chunk, " has ", values.size(),
                            " floats, not ", shape->second);
      }
    }
    if (tensors.size() != held->second.size()) {
      return absl::StrCat("chunk ", chunk, ": ", tensors.size(), " tied gradients, not ",
                          held->second.size());
    }
  }
  if (grads.size() != expected.size()) {
    return absl::StrCat("tied gradients of ", grads.size(), " chunks, not ", expected.size());
  }
  return "";
}

}  // namespace stagehand::runtime
