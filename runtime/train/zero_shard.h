// ZeRO-1 (--zero=1): which part of a chunk's flat parameters a data-parallel member owns (its
// AdamW moments live only there; it updates only those values), and the exchanges that put the
// right values in the right place: gradients reduce-scattered to their owners, owned values
// gathered back to every member. Not a collective algorithm: the data moves through the
// Collective interface (Gloo, NCCL, or the in-process group) and sums use SumInMemberOrder, so
// a sharded run sums exactly as an unsharded one does.
//
// Member m of D owns elements [ShardBegin(n, D, m), ShardEnd(n, D, m)) of every chunk's flat
// buffer of n floats (runtime/collectives/collective.h), whatever the gradient buckets are.
#ifndef STAGEHAND_RUNTIME_TRAIN_ZERO_SHARD_H_
#define STAGEHAND_RUNTIME_TRAIN_ZERO_SHARD_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "runtime/collectives/collective.h"

namespace stagehand::runtime {

// Elements [begin, end) of a flat buffer.
struct ElementRange {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
  friend bool operator==(const ElementRange& a, const ElementRange& b) {
    return a.begin == b.begin && a.end == b.end;
  }
};

// What member `member` of `size` owns of an n-element buffer.
ElementRange OwnedRange(int64_t n, int size, int member);
// The intersection (empty ranges have begin == end, clamped into [a.begin, a.end]).
ElementRange Intersect(const ElementRange& a, const ElementRange& b);
// How many elements of `range` (inside an n-element buffer) each member owns, by member: the
// owners' pieces are contiguous and in member order, so they partition `range`.
std::vector<int64_t> OwnerCounts(int64_t n, int size, const ElementRange& range);

// Every member passes its `buffer` (its n floats of one chunk's gradient); afterwards each
// member's owned elements inside `range` hold the ordered sum over the members
// (SumInMemberOrder), bitwise what AllReduceSum gives there; other elements are left alone.
absl::Status ReduceScatterToOwners(Collective& group, absl::Span<float> buffer,
                                   const ElementRange& range);
// Every member passes its `buffer`; afterwards every member holds, in `range`, each owner's
// values of its owned elements (parameters after the update, or reduced gradients).
absl::Status AllGatherFromOwners(Collective& group, absl::Span<float> buffer,
                                 const ElementRange& range);

// Part of a sharded buffer: `data` holds elements [at, at + data.size()) of an n-element buffer
// owned as above. With --ep a chunk's dense elements and its experts' are sharded as two such
// buffers (over different groups), each the concatenation of its pieces of the flat buffer.
struct ShardWindow {
  absl::Span<float> data;
  int64_t at = 0;
  int64_t n = 0;
};
// As above, `range` in the n-element buffer's coordinates and inside the window.
absl::Status ReduceScatterToOwners(Collective& group, const ShardWindow& window,
                                   const ElementRange& range);
absl::Status AllGatherFromOwners(Collective& group, const ShardWindow& window,
                                 const ElementRange& range);

// Every member passes `mine` (the same count on each); `all` receives every member's values,
// member by member. One exchange for a stage's per-tensor partial norms: the doubles travel as
// their bytes through AllGather, which moves data and never adds it.
absl::Status AllGatherDoubles(Collective& group, absl::Span<const double> mine,
                              std::vector<double>* all);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_TRAIN_ZERO_SHARD_H_
