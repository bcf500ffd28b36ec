// --ep's sharded expert weights in the runtime: which elements of a chunk's flat gradient are
// routed experts' (reduced over the expert-data-parallel group edp, everything else over the
// whole data-parallel group), and per-tensor lists (squared norms, names) put back into the
// order the whole model has them. Not a collective: callers move the data.
//
// Members of an expert-parallel group hold the same layout: member m of S holds experts
// [m X/S, (m + 1) X/S) of each MoE layer with X experts (models::ExpertShard), so the tensors at
// one offset are the same kind on every member, and a layer's experts are one run of tensors.
#ifndef STAGEHAND_RUNTIME_TRAIN_EXPERT_LAYOUT_H_
#define STAGEHAND_RUNTIME_TRAIN_EXPERT_LAYOUT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "models/parameters.h"
#include "runtime/train/zero_shard.h"

namespace stagehand::runtime {

// A piece of a flat buffer whose elements are all routed experts' or all not.
struct GradientPiece {
  ElementRange range;
  bool expert = false;
  friend bool operator==(const GradientPiece& a, const GradientPiece& b) {
    return a.range == b.range && a.expert == b.expert;
  }
};

// `range` of a buffer laid out by `infos`, cut where it passes between expert and other
// tensors; in order, covering `range` exactly.
std::vector<GradientPiece> SplitAtExperts(const std::vector<models::ParamInfo>& infos,
                                          const ElementRange& range);

// ZeRO-1 (--zero=1) with --ep: a chunk's flat buffer as two buffers sharded apart (ShardWindow),
// its dense elements (over the data-parallel group) and its routed experts' (over the
// expert-data-parallel group), each the concatenation of its pieces in order.
struct ShardPiece {
  GradientPiece piece;  // whole tensors of the flat buffer
  int64_t at = 0;       // where it starts in its kind's concatenation
};
struct ShardLayout {
  std::vector<ShardPiece> pieces;  // covering the buffer, in order
  int64_t dense = 0, experts = 0;  // the concatenations' sizes
};
// The layout of an n-element buffer laid out by `infos`; without `split_experts` one dense
// piece, the whole buffer (ZeRO-1 without --ep).
ShardLayout ShardLayoutOf(const std::vector<models::ParamInfo>& infos, int64_t n,
                          bool split_experts);

// The entries of `local` (one per tensor of `infos` that is not a tied copy, in order) that
// belong to expert tensors, in order.
template <typename T>
std::vector<T> ExpertEntries(const std::vector<models::ParamInfo>& infos,
                             const std::vector<T>& local) {
  std::vector<T> out;
  size_t k = 0;
  for (const models::ParamInfo& info : infos) {
    if (info.tied_copy) continue;
    if (info.expert >= 0) out.push_back(local[k]);
    ++k;
  }
  return out;
}

// The whole model's list from a shard's: `local` as for ExpertEntries; `experts[j]` is member
// j's ExpertEntries (every member in member order, this one included). Each run of expert
// tensors (one layer's) becomes every member's run of that layer, in member order: the list
// a chunk holding every expert has.
template <typename T>
std::vector<T> InModelOrder(const std::vector<models::ParamInfo>& infos,
                            const std::vector<T>& local,
                            const std::vector<std::vector<T>>& experts) {
  std::vector<T> out;
  size_t k = 0, at = 0;  // into local, into each member's expert entries
  for (size_t i = 0; i < infos.size(); ++i) {
    if (infos[i].tied_copy) continue;
    if (infos[i].expert < 0) {
      out.push_back(local[k++]);
      continue;
    }
    size_t run = 0;
    while (i + run < infos.size() && infos[i + run].expert >= 0) ++run;
    for (const std::vector<T>& member : experts) {
      out.insert(out.end(), member.begin() + at, member.begin() + at + run);
    }
    at += run, k += run, i += run - 1;
  }
  return out;
}

// The names member `to` holds at the offsets of `infos`' expert tensors, `infos` being member
// `from`'s layout (each layer's expert ids shifted by (to - from) x its experts per member),
// in order.
std::vector<std::string> ExpertNamesOf(const std::vector<models::ParamInfo>& infos, int from,
                                       int to);

// Where replica `replica` of `dp` sits in the rank grid's ep x edp split of dp (the same on
// every one of `num_stages` stages): its member of its expert-parallel group, and which of the
// dp / ep such groups (its edp index). ep varies fastest: replicas 0 .. ep - 1 are edp group 0.
struct ExpertSeat {
  int member = 0;
  int edp = 0;
};
absl::StatusOr<ExpertSeat> ExpertSeatOf(int dp, int ep, int num_stages, int replica);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_TRAIN_EXPERT_LAYOUT_H_
