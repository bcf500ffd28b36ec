// GatherExperts and the copies by name it shares with the one-process pipeline.
#include "runtime/train/expert_gather.h"

#include <algorithm>
#include <string>
#include <vector>

#include "runtime/train/expert_layout.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {
namespace {

// One flat buffer `data` laid out as `shard` into `whole_data` laid out as `whole`: the tensors
// every member holds alike copied, the experts gathered from every member (`whole` null: this
// member only hands its experts to the others).
absl::Status GatherBuffer(Collective& group, const models::ParameterSet<float>& shard,
                          const float* data, const models::ParameterSet<float>* whole,
                          float* whole_data) {
  if (whole != nullptr) CopyHeldTensors(shard, data, *whole, whole_data);
  std::vector<float> mine;  // this member's expert tensors, in tensor order
  for (const models::ParamInfo& info : shard.infos()) {
    if (info.expert >= 0)
      mine.insert(mine.end(), data + info.offset, data + info.offset + info.size);
  }
  if (mine.empty()) return absl::OkStatus();  // no MoE layer here, nor on the other members
  std::vector<float> all(mine.size() * group.size());
  RETURN_IF_ERROR(group.AllGather(mine, absl::MakeSpan(all)));
  for (int j = 0; whole != nullptr && j < group.size(); ++j) {
    const std::vector<std::string> names = ExpertNamesOf(shard.infos(), group.member(), j);
    const float* from = all.data() + j * mine.size();
    size_t k = 0;
    for (const models::ParamInfo& info : shard.infos()) {
      if (info.expert < 0) continue;
      std::copy(from, from + info.size, whole_data + whole->info(names[k++]).offset);
      from += info.size;
    }
  }
  return absl::OkStatus();
}

}  // namespace

void CopyHeldTensors(const models::ParameterSet<float>& from, const float* from_data,
                     const models::ParameterSet<float>& to, float* to_data) {
  for (const models::ParamInfo& info : from.infos()) {
    if (!to.contains(info.name)) continue;
    std::copy(from_data + info.offset, from_data + info.offset + info.size,
              to_data + to.info(info.name).offset);
  }
}

void CopyHeldMoments(const models::ParameterSet<float>& from, const OptimizerState& in,
                     const models::ParameterSet<float>& to, OptimizerState& out) {
  out.m.resize(to.size());
  out.v.resize(to.size());
  CopyHeldTensors(from, in.m.data(), to, out.m.data());
  CopyHeldTensors(from, in.v.data(), to, out.v.data());
}

bool HoldsMoments(const OptimizerState& state, int64_t floats) {
  return static_cast<int64_t>(state.m.size()) == floats &&
         static_cast<int64_t>(state.v.size()) == floats;
}

absl::Status GatherExperts(Collective& group, const Chunk& shard,
                           const OptimizerState* shard_moments, Chunk* whole,
                           OptimizerState* whole_moments, bool with_moments) {
  const models::ParameterSet<float>& from = shard.params();
  models::ParameterSet<float>* to = whole != nullptr ? &whole->params() : nullptr;
  RETURN_IF_ERROR(GatherBuffer(group, from, from.values(), to, to ? to->values() : nullptr));
  if (!with_moments) return absl::OkStatus();
  // Members update in the same steps: all hold moments, or none does.
  if (shard_moments == nullptr || !HoldsMoments(*shard_moments, from.size())) {
    if (whole_moments != nullptr) *whole_moments = {};
    return absl::OkStatus();
  }
  float* m = nullptr;
  float* v = nullptr;
  if (to != nullptr) {
    whole_moments->m.assign(to->size(), 0.0f);
    whole_moments->v.assign(to->size(), 0.0f);
    m = whole_moments->m.data(), v = whole_moments->v.data();
  }
  RETURN_IF_ERROR(GatherBuffer(group, from, shard_moments->m.data(), to, m));
  return GatherBuffer(group, from, shard_moments->v.data(), to, v);
}

}  // namespace stagehand::runtime
