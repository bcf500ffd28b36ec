// ParameterSet storage and initialisation.
#include "models/parameters.h"

#include <cmath>
#include <cstring>
#include <utility>

namespace stagehand::models {
namespace {

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t Fnv1a(absl::string_view text) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char ch : text) {
    h ^= static_cast<unsigned char>(ch);
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace

void FillNormal(double* out, int64_t n, uint64_t seed, absl::string_view name, double std) {
  uint64_t state = seed ^ Fnv1a(name);
  const double two_pi = 6.283185307179586;
  for (int64_t i = 0; i < n; i += 2) {
    // Box-Muller on two uniform doubles in (0, 1].
    double u1 = (static_cast<double>(SplitMix64(state) >> 11) + 1.0) * 0x1.0p-53;
    double u2 = (static_cast<double>(SplitMix64(state) >> 11) + 1.0) * 0x1.0p-53;
    double r = std::sqrt(-2.0 * std::log(u1));
    out[i] = std * r * std::cos(two_pi * u2);
    if (i + 1 < n) out[i + 1] = std * r * std::sin(two_pi * u2);
  }
}

template <typename Real>
void ParameterSet<Real>::Add(const std::string& name, std::vector<int64_t> shape, Init init,
                             double init_std, bool weight_decay) {
  ParamInfo info;
  info.name = name;
  info.size = 1;
  for (int64_t d : shape) info.size *= d;
  info.shape = std::move(shape);
  info.offset = total_;
  info.init = init;
  info.init_std = init_std;
  info.weight_decay = weight_decay;
  total_ += info.size;
  index_[name] = static_cast<int>(infos_.size());
  infos_.push_back(std::move(info));
}

template <typename Real>
void ParameterSet<Real>::Allocate(uint64_t seed) {
  values_.assign(total_, Real(0));
  grads_.assign(total_, Real(0));
  std::vector<double> scratch;
  for (const ParamInfo& info : infos_) {
    Real* v = values_.data() + info.offset;
    switch (info.init) {
      case Init::kZeros:
        break;
      case Init::kOnes:
        for (int64_t i = 0; i < info.size; ++i) v[i] = Real(1);
        break;
      case Init::kNormal:
        scratch.resize(info.size);
        FillNormal(scratch.data(), info.size, seed, info.name, info.init_std);
        for (int64_t i = 0; i < info.size; ++i) v[i] = static_cast<Real>(scratch[i]);
        break;
    }
  }
}

template <typename Real>
Real* ParameterSet<Real>::value(absl::string_view name) {
  return values_.data() + infos_[index_.at(name)].offset;
}
template <typename Real>
const Real* ParameterSet<Real>::value(absl::string_view name) const {
  return values_.data() + infos_[index_.at(name)].offset;
}
template <typename Real>
Real* ParameterSet<Real>::grad(absl::string_view name) {
  return grads_.data() + infos_[index_.at(name)].offset;
}
template <typename Real>
void ParameterSet<Real>::MarkTiedCopy(absl::string_view name) {
  infos_[index_.at(name)].tied_copy = true;
}
template <typename Real>
void ParameterSet<Real>::ZeroGrads() {
  std::memset(grads_.data(), 0, grads_.size() * sizeof(Real));
}

template class ParameterSet<float>;
template class ParameterSet<double>;

}  // namespace stagehand::models
