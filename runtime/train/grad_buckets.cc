// Bucket plan and REDUCE_GRAD issue order.
#include "runtime/train/grad_buckets.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace stagehand::runtime {

absl::StatusOr<std::vector<GradBucket>> PlanGradBuckets(
    const std::map<int, int64_t>& gradient_floats, double bucket_mb) {
  if (!(bucket_mb > 0) || !std::isfinite(bucket_mb) || bucket_mb > 1 << 20) {
    return absl::InvalidArgumentError(
        absl::StrCat("--grad_bucket_mb=", bucket_mb, ": must be in (0, 1048576]"));
  }
  const int64_t floats_per_bucket =
      std::max<int64_t>(1, static_cast<int64_t>(bucket_mb * 1024 * 1024 / sizeof(float)));
  std::vector<GradBucket> out;
  for (auto it = gradient_floats.rbegin(); it != gradient_floats.rend(); ++it) {
    const auto& [chunk, n] = *it;
    for (int64_t begin = 0; begin < n; begin += floats_per_bucket) {
      out.push_back(GradBucket{chunk, begin, std::min(n, begin + floats_per_bucket)});
    }
  }
  return out;
}

GradReductionTracker::GradReductionTracker(std::vector<GradBucket> buckets, int num_microbatches,
                                           GradReductionStart start)
    : buckets_(std::move(buckets)), num_microbatches_(num_microbatches), start_(start) {}

bool GradReductionTracker::Complete(int bucket) const {
  auto it = weight_actions_.find(buckets_[bucket].chunk);
  return it != weight_actions_.end() && it->second >= num_microbatches_;
}

std::vector<int> GradReductionTracker::OnComputeFinished(ActionKind kind, int chunk) {
  if (kind == ActionKind::kBackwardWeight || kind == ActionKind::kBackward) {
    ++weight_actions_[chunk];
  }
  std::vector<int> issue;
  if (start_ == GradReductionStart::kAfterBackward) {
    for (int b = 0; b < static_cast<int>(buckets_.size()); ++b) {
      if (!Complete(b)) return issue;
    }
  }
  while (issued_ < static_cast<int>(buckets_.size()) && Complete(issued_)) {
    issue.push_back(issued_++);
  }
  return issue;
}

void GradReductionTracker::OnReduced(int) { ++reduced_; }

}  // namespace stagehand::runtime
