// libFuzzer target: what a peer sends (transfer notices, tied gradients, squared norms),
// built field by field from the input, through the checks the comm and gates run. A
// message the checks pass must be safe to index with. Not an actor test.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "actors/cluster/checks.h"
#include "runtime/cluster/tied_shapes.h"
#include "runtime/planner.h"

namespace {

// Reads fixed-size values from the input, zeros once it runs out.
class Bytes {
 public:
  Bytes(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  template <typename T>
  T Take() {
    T v{};
    const size_t n = std::min(sizeof(T), size_ - pos_);
    std::memcpy(&v, data_ + pos_, n);
    pos_ += n;
    return v;
  }
  bool done() const { return pos_ >= size_; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace stagehand;
  Bytes in(data, size);
  const int P = 1 + in.Take<uint8_t>() % 4, M = 1 + in.Take<uint8_t>() % 8;
  const char* planners[] = {"1f1b", "gpipe", "interleaved", "zb_v"};
  auto def = runtime::PlannerRegistry::Default().Get(planners[in.Take<uint8_t>() % 4]);
  if (!def.ok()) return 0;
  auto spec = (*def)->MakeSpec({P, M, 0});
  if (!spec.ok()) return 0;
  actors::cluster::NoticeRules rules;
  rules.spec = *spec;
  rules.stage = in.Take<uint8_t>() % P;
  rules.tensor_floats = 64;
  for (int s = 0; s < P; ++s) rules.stage_rank.push_back(s);
  // Transfer notices.
  for (int k = 0; k < 4 && !in.done(); ++k) {
    actors::cluster::TransferNotice n;
    n.step = in.Take<int64_t>();
    n.from_rank = in.Take<int32_t>();
    n.tag = in.Take<uint64_t>();
    n.floats = in.Take<int64_t>();
    n.kind = static_cast<runtime::ActionKind>(in.Take<int32_t>());  // any value can arrive
    n.from_stage = in.Take<int32_t>();
    n.to_stage = in.Take<int32_t>();
    n.chunk = in.Take<int32_t>();
    n.microbatch = in.Take<int32_t>();
    if (!actors::cluster::CheckNoticeFields(n, rules).empty()) continue;
    const bool usable = n.chunk >= 0 && n.chunk < spec->num_chunks && n.microbatch >= 0 &&
                        n.microbatch < spec->num_microbatches && n.from_stage >= 0 &&
                        n.from_stage < P && n.floats == rules.tensor_floats;
    if (!usable) std::abort();
  }
  // Tied gradients and squared norms of the receiving stage.
  const auto expected = runtime::StageTiedShapes(*spec, rules.stage, 16);
  std::map<int, std::map<std::string, std::vector<float>>> grads;
  actors::SquaredNorms norms;
  norms.stage = in.Take<int8_t>();
  for (int k = 0; k < 3 && !in.done(); ++k) {
    const int chunk = in.Take<int8_t>();
    const std::string name = in.Take<uint8_t>() % 2 ? "wte" : "wpe";
    grads[chunk][name].resize(in.Take<uint8_t>() % 32);
    norms.norms[chunk].resize(in.Take<uint8_t>() % 4, in.Take<double>());
  }
  (void)runtime::CheckTiedGradients(grads, expected);
  (void)actors::cluster::CheckSquaredNorms(norms, *spec);
  return 0;
}
