// A set of named parameter tensors in one flat buffer, with their gradients, and GPT-2's
// deterministic initialisation. Not an optimizer (runtime/train holds AdamW state).
#ifndef STAGEHAND_MODELS_PARAMETERS_H_
#define STAGEHAND_MODELS_PARAMETERS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"

namespace stagehand::models {

enum class Init { kZeros, kOnes, kNormal };

struct ParamInfo {
  std::string name;            // GPT-2 names: "wte", "h.3.attn.c_attn.weight", ...
  std::vector<int64_t> shape;  // our layout: linear weights are (OC, C)
  int64_t offset = 0;          // into the flat buffer
  int64_t size = 0;            // elements
  bool weight_decay = false;   // matrices decay; biases, LayerNorm and embeddings-as-vectors not
  bool tied_copy = false;      // a second copy of a tied weight held by another chunk:
                               // its gradient is summed with the owner's; counted once in norms
  int expert = -1;             // a routed expert's tensor: the expert's global id in its layer
                               // (its name's); -1 for every other tensor
  Init init = Init::kZeros;
  double init_std = 0.0;
};

template <typename Real>
class ParameterSet {
 public:
  // Declares a tensor; call Allocate() after the last Add.
  void Add(const std::string& name, std::vector<int64_t> shape, Init init, double init_std,
           bool weight_decay);
  // Allocates values and gradients (zero) and initialises values from `seed`: each tensor
  // draws from its own stream keyed by (seed, name), so values do not depend on chunking.
  void Allocate(uint64_t seed);

  Real* value(absl::string_view name);
  Real* grad(absl::string_view name);
  const Real* value(absl::string_view name) const;
  bool contains(absl::string_view name) const { return index_.contains(name); }
  const ParamInfo& info(absl::string_view name) const { return infos_[index_.at(name)]; }
  void MarkTiedCopy(absl::string_view name);
  // Marks infos()[index] as a tensor of routed expert `expert` (ParamInfo::expert).
  void MarkExpert(int index, int expert) { infos_[index].expert = expert; }

  const std::vector<ParamInfo>& infos() const { return infos_; }
  Real* values() { return values_.data(); }
  Real* grads() { return grads_.data(); }
  const Real* values() const { return values_.data(); }
  const Real* grads() const { return grads_.data(); }
  int64_t size() const { return static_cast<int64_t>(values_.size()); }
  void ZeroGrads();

 private:
  std::vector<ParamInfo> infos_;
  absl::flat_hash_map<std::string, int> index_;
  std::vector<Real> values_;
  std::vector<Real> grads_;
  int64_t total_ = 0;
};

// Deterministic normal(0, std) stream keyed by (seed, name); platform independent.
void FillNormal(double* out, int64_t n, uint64_t seed, absl::string_view name, double std);

}  // namespace stagehand::models

#endif  // STAGEHAND_MODELS_PARAMETERS_H_
