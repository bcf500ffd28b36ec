// One interface for the collectives of a rank group: Gloo on CPU (gloo_collective.h), NCCL on
// GPU. Stagehand never writes its own ring or all-to-all algorithm; what it does fix is the
// order in which floats are summed, so that results are bitwise the same whatever the process
// layout:
//
//   A reduction sums the members' contributions element by element in ascending member order,
//   ((x0 + x1) + x2) + ..., in float32. The one-process runtime (replicas as actors) sums with
//   the same function, SumInMemberOrder, so `--dp=2` in one process and on two processes agree
//   bit for bit.
//
// To keep that order while moving only O(n) bytes per rank, a reduce-scatter is an all-to-all
// of the shards (each member receives every member's copy of its own shard) followed by the
// ordered local sum; an all-reduce is that reduce-scatter followed by an all-gather. This is
// the bandwidth of a ring reduce-scatter + all-gather, with the data movement done by the
// library's all-to-all and all-gather.
#ifndef STAGEHAND_RUNTIME_COLLECTIVES_COLLECTIVE_H_
#define STAGEHAND_RUNTIME_COLLECTIVES_COLLECTIVE_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace stagehand::runtime {

// Member `member` of `size` owns elements [ShardBegin, ShardEnd) of an n-element buffer:
// contiguous, the first n % size members one element longer.
int64_t ShardBegin(int64_t n, int size, int member);
int64_t ShardEnd(int64_t n, int size, int member);
inline int64_t ShardLength(int64_t n, int size, int member) {
  return ShardEnd(n, size, member) - ShardBegin(n, size, member);
}

// out[k] = ((parts[0][k] + parts[1][k]) + parts[2][k]) + ... : the documented summation order.
// Every part must have out.size() elements; `out` may alias parts[0] but no other part.
absl::Status SumInMemberOrder(const std::vector<absl::Span<const float>>& parts,
                              absl::Span<float> out);

// An all-to-all's `what` ("send" or "receive") counts checked against the group's `size` and
// the buffer's `span_size`: one per member, none negative, summing to the buffer.
absl::Status CheckAllToAllCounts(const char* what, const std::vector<int64_t>& counts, int size,
                                 size_t span_size);
// A gather of variable pieces checked (one count per member, none negative, this `member`'s
// equal to its piece's `piece_size`, summing to `out_size`): where each member's piece lands.
absl::StatusOr<std::vector<int64_t>> GatherOffsets(size_t piece_size,
                                                   const std::vector<int64_t>& counts,
                                                   size_t out_size, int member);

class Collective {
 public:
  virtual ~Collective() = default;
  virtual int member() const = 0;  // this process's index in the group
  virtual int size() const = 0;

  // Every member passes `in` of the same length n; member m receives in `shard` (length
  // ShardLength(n, size, m)) the ordered sum of every member's elements of its shard.
  virtual absl::Status ReduceScatterSum(absl::Span<const float> in, absl::Span<float> shard) = 0;
  // Every member passes its shard of an n-element buffer (ShardLength(n, size, member)); every
  // member receives the whole buffer in `out`.
  virtual absl::Status AllGather(absl::Span<const float> shard, absl::Span<float> out) = 0;
  // `in` holds send_counts[j] elements for member j, in member order; `out` receives
  // recv_counts[j] elements from member j, in member order. Counts must agree pairwise.
  virtual absl::Status AllToAllV(absl::Span<const float> in,
                                 const std::vector<int64_t>& send_counts, absl::Span<float> out,
                                 const std::vector<int64_t>& recv_counts) = 0;
  // Every member's `value`, in member order (for global norms and non-finite checks: the
  // caller combines them in member order, so the result is the same on every rank).
  virtual absl::Status AllGatherScalar(double value, std::vector<double>* values) = 0;

  // ReduceScatterSum then AllGather: every member ends with the ordered sum in `inout`.
  absl::Status AllReduceSum(absl::Span<float> inout);
};

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_COLLECTIVES_COLLECTIVE_H_
