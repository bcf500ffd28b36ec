#include "runtime/collectives/collective.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {

int64_t ShardBegin(int64_t n, int size, int member) {
  const int64_t base = n / size;
  const int64_t extra = n % size;
  return member * base + (member < extra ? member : extra);
}

int64_t ShardEnd(int64_t n, int size, int member) { return ShardBegin(n, size, member + 1); }

absl::Status SumInMemberOrder(const std::vector<absl::Span<const float>>& parts,
                              absl::Span<float> out) {
  if (parts.empty()) return absl::InvalidArgumentError("ordered sum of no parts");
  for (size_t m = 0; m < parts.size(); ++m) {
    if (parts[m].size() != out.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ordered sum: member ", m, " has ", parts[m].size(), " elements, expected ", out.size()));
    }
  }
  // Member-major loops vectorize; each element still sees ((p0 + p1) + p2) + ...
  if (out.data() != parts[0].data()) {
    std::copy(parts[0].begin(), parts[0].end(), out.begin());
  }
  for (size_t m = 1; m < parts.size(); ++m) {
    const float* part = parts[m].data();
    float* dst = out.data();
    for (size_t k = 0; k < out.size(); ++k) dst[k] += part[k];
  }
  return absl::OkStatus();
}

absl::Status CheckAllToAllCounts(const char* what, const std::vector<int64_t>& counts, int size,
                                 size_t span_size) {
  if (counts.size() != static_cast<size_t>(size)) {
    return absl::InvalidArgumentError(
        absl::StrCat("all-to-all: ", counts.size(), " ", what, " counts for ", size, " members"));
  }
  int64_t total = 0;
  for (int64_t c : counts) {
    if (c < 0) {
      return absl::InvalidArgumentError(absl::StrCat("all-to-all: negative ", what, " count"));
    }
    total += c;
  }
  if (total != static_cast<int64_t>(span_size)) {
    return absl::InvalidArgumentError(absl::StrCat("all-to-all: ", what, " counts sum to ", total,
                                                   " but the buffer has ", span_size));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int64_t>> GatherOffsets(size_t piece_size,
                                                   const std::vector<int64_t>& counts,
                                                   size_t out_size, int member) {
  if (member < 0 || member >= static_cast<int>(counts.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("gather: member ", member, " of ", counts.size(), " counts"));
  }
  if (counts[member] != static_cast<int64_t>(piece_size)) {
    return absl::InvalidArgumentError(absl::StrCat("gather: member ", member, " passes ",
                                                   piece_size, " elements, its count is ",
                                                   counts[member]));
  }
  std::vector<int64_t> offsets(counts.size());
  int64_t at = 0;
  for (size_t j = 0; j < counts.size(); ++j) {
    if (counts[j] < 0) return absl::InvalidArgumentError("gather: a negative count");
    offsets[j] = at;
    at += counts[j];
  }
  if (at != static_cast<int64_t>(out_size)) {
    return absl::InvalidArgumentError(
        absl::StrCat("gather: counts sum to ", at, " but the output has ", out_size));
  }
  return offsets;
}

absl::Status Collective::AllReduceSum(absl::Span<float> inout) {
  const int64_t n = static_cast<int64_t>(inout.size());
  std::vector<float> shard(ShardLength(n, size(), member()));
  RETURN_IF_ERROR(ReduceScatterSum(inout, absl::MakeSpan(shard)));
  return AllGather(shard, inout);
}

}  // namespace stagehand::runtime
