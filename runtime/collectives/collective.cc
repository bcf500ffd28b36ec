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

absl::Status Collective::AllReduceSum(absl::Span<float> inout) {
  const int64_t n = static_cast<int64_t>(inout.size());
  std::vector<float> shard(ShardLength(n, size(), member()));
  RETURN_IF_ERROR(ReduceScatterSum(inout, absl::MakeSpan(shard)));
  return AllGather(shard, inout);
}

}  // namespace stagehand::runtime
