// Owned ranges and the reduce-scatter / all-gather to and from owners.
#include "runtime/train/zero_shard.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {

ElementRange OwnedRange(int64_t n, int size, int member) {
  return {ShardBegin(n, size, member), ShardEnd(n, size, member)};
}

ElementRange Intersect(const ElementRange& a, const ElementRange& b) {
  const int64_t begin = std::clamp(b.begin, a.begin, a.end);
  return {begin, std::max(begin, std::min(a.end, b.end))};
}

std::vector<int64_t> OwnerCounts(int64_t n, int size, const ElementRange& range) {
  std::vector<int64_t> counts(size);
  for (int j = 0; j < size; ++j) counts[j] = Intersect(range, OwnedRange(n, size, j)).size();
  return counts;
}

namespace {

absl::Status CheckRange(const ShardWindow& window, const ElementRange& range) {
  const int64_t end = window.at + static_cast<int64_t>(window.data.size());
  if (range.begin < window.at || range.end > end || range.begin > range.end || end > window.n ||
      window.at < 0) {
    return absl::InvalidArgumentError(absl::StrCat("range [", range.begin, ", ", range.end,
                                                   ") is outside a buffer's elements [", window.at,
                                                   ", ", end, ") (of ", window.n, ")"));
  }
  return absl::OkStatus();
}

// Elements [begin, end) of the sharded buffer, in the window.
absl::Span<float> Elements(const ShardWindow& window, const ElementRange& range) {
  return window.data.subspan(range.begin - window.at, range.size());
}

}  // namespace

absl::Status ReduceScatterToOwners(Collective& group, absl::Span<float> buffer,
                                   const ElementRange& range) {
  return ReduceScatterToOwners(group, ShardWindow{buffer, 0, static_cast<int64_t>(buffer.size())},
                               range);
}

absl::Status AllGatherFromOwners(Collective& group, absl::Span<float> buffer,
                                 const ElementRange& range) {
  return AllGatherFromOwners(group, ShardWindow{buffer, 0, static_cast<int64_t>(buffer.size())},
                             range);
}

absl::Status ReduceScatterToOwners(Collective& group, const ShardWindow& window,
                                   const ElementRange& range) {
  RETURN_IF_ERROR(CheckRange(window, range));
  const int n_members = group.size(), me = group.member();
  // Each member sends owner j the elements j owns; it receives every member's copy of its own.
  const std::vector<int64_t> send_counts = OwnerCounts(window.n, n_members, range);
  const ElementRange mine = Intersect(range, OwnedRange(window.n, n_members, me));
  const std::vector<int64_t> recv_counts(n_members, mine.size());
  std::vector<float> received(mine.size() * n_members);
  RETURN_IF_ERROR(
      group.AllToAllV(Elements(window, range), send_counts, absl::MakeSpan(received), recv_counts));
  std::vector<absl::Span<const float>> parts;
  for (int j = 0; j < n_members; ++j) {
    parts.push_back(absl::MakeConstSpan(received).subspan(j * mine.size(), mine.size()));
  }
  return SumInMemberOrder(parts, Elements(window, mine));
}

absl::Status AllGatherFromOwners(Collective& group, const ShardWindow& window,
                                 const ElementRange& range) {
  RETURN_IF_ERROR(CheckRange(window, range));
  const int n_members = group.size(), me = group.member();
  const ElementRange mine = Intersect(range, OwnedRange(window.n, n_members, me));
  const absl::Span<float> own = Elements(window, mine);
  if (range.begin == 0 && range.end == window.n) {  // the owners' pieces are its shards
    const std::vector<float> shard(own.begin(), own.end());
    return group.AllGather(shard, Elements(window, range));
  }
  // Variable pieces: every member sends its piece to every member (all-to-all with the same
  // piece for each), and the pieces land in member order, which is their place in `range`.
  std::vector<float> send;
  send.reserve(mine.size() * n_members);
  for (int j = 0; j < n_members; ++j) send.insert(send.end(), own.begin(), own.end());
  const std::vector<int64_t> send_counts(n_members, mine.size());
  return group.AllToAllV(send, send_counts, Elements(window, range),
                         OwnerCounts(window.n, n_members, range));
}

absl::Status AllGatherDoubles(Collective& group, absl::Span<const double> mine,
                              std::vector<double>* all) {
  static_assert(sizeof(double) == 2 * sizeof(float));
  const int64_t floats = 2 * static_cast<int64_t>(mine.size());
  std::vector<float> shard(floats), gathered(floats * group.size());
  std::memcpy(shard.data(), mine.data(), mine.size() * sizeof(double));
  RETURN_IF_ERROR(group.AllGather(shard, absl::MakeSpan(gathered)));
  all->resize(mine.size() * group.size());
  std::memcpy(all->data(), gathered.data(), all->size() * sizeof(double));
  return absl::OkStatus();
}

}  // namespace stagehand::runtime
