// Bucket plan and REDUCE_GRAD issue order.
#include "runtime/train/grad_buckets.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace stagehand::runtime {

namespace {

using PartRanges = std::vector<std::vector<std::pair<int64_t, int64_t>>>;

struct Run {
  int64_t begin = 0, end = 0;
  int part = -1;  // -1: elements of no part
};

// Runs of a chunk's `n` gradient floats whose elements lie in one part of `parts` (or in
// none), in offset order, covering [0, n). The parts' ranges are disjoint.
std::vector<Run> RunsOfOnePart(int64_t n, const PartRanges& parts) {
  std::map<int64_t, std::pair<int64_t, int>> labelled;  // begin -> (end, part)
  for (int p = 0; p < static_cast<int>(parts.size()); ++p) {
    for (const auto& [begin, end] : parts[p]) {
      if (std::min(end, n) > begin) labelled[begin] = {std::min(end, n), p};
    }
  }
  std::vector<Run> runs;
  auto extend = [&](int64_t begin, int64_t end, int part) {
    if (end <= begin) return;
    if (!runs.empty() && runs.back().part == part && runs.back().end == begin) {
      runs.back().end = end;
    } else {
      runs.push_back({begin, end, part});
    }
  };
  int64_t at = 0;
  for (const auto& [begin, range] : labelled) {
    extend(at, begin, -1);
    extend(begin, range.first, range.second);
    at = range.first;
  }
  extend(at, n, -1);
  return runs;
}

// `[begin, end)` cut into round(size / cap) (at least 1) pieces of equal size.
void CutEvenly(int chunk, int64_t begin, int64_t end, int64_t cap, std::vector<GradBucket>& out) {
  const int64_t size = end - begin;
  const int64_t pieces = std::max<int64_t>(1, (size + cap / 2) / cap);
  for (int64_t i = 0; i < pieces; ++i) {
    out.push_back(GradBucket{chunk, begin + size * i / pieces, begin + size * (i + 1) / pieces});
  }
}

// The runs of the model's first chunk that become final only as its last W / B ends (elements
// of no part: the embedding; and the pass's last part: the first layer's last), when they
// lead the chunk's buffer: how many runs, from the first.
size_t FinalTail(int chunk, const std::vector<Run>& runs, int num_parts) {
  if (chunk != 0) return 0;
  size_t k = 0;
  while (k < runs.size() && (runs[k].part == -1 || runs[k].part == num_parts - 1)) ++k;
  return k;
}

}  // namespace

absl::StatusOr<std::vector<GradBucket>> PlanGradBuckets(
    const std::map<int, int64_t>& gradient_floats, double bucket_mb, const GradPartLayout& parts) {
  if (!(bucket_mb > 0) || !std::isfinite(bucket_mb) || bucket_mb > 1 << 20) {
    return absl::InvalidArgumentError(
        absl::StrCat("--grad_bucket_mb=", bucket_mb, ": must be in (0, 1048576]"));
  }
  const int64_t floats_per_bucket =
      std::max<int64_t>(1, static_cast<int64_t>(bucket_mb * 1024 * 1024 / sizeof(float)));
  std::vector<GradBucket> out;
  for (auto it = gradient_floats.rbegin(); it != gradient_floats.rend(); ++it) {
    const auto& [chunk, n] = *it;
    if (auto laid_out = parts.find(chunk); laid_out != parts.end()) {
      const std::vector<Run> runs = RunsOfOnePart(n, laid_out->second);
      // The step's last compute finalises the first chunk's tail: nothing runs after it for
      // its reduction to hide under, so it goes out as one collective, not one per cap.
      const size_t tail = FinalTail(chunk, runs, static_cast<int>(laid_out->second.size()));
      if (tail > 0) out.push_back(GradBucket{chunk, 0, runs[tail - 1].end});
      for (size_t r = tail; r < runs.size(); ++r) {
        CutEvenly(chunk, runs[r].begin, runs[r].end, floats_per_bucket, out);
      }
      continue;
    }
    for (int64_t begin = 0; begin < n; begin += floats_per_bucket) {
      out.push_back(GradBucket{chunk, begin, std::min(n, begin + floats_per_bucket)});
    }
  }
  return out;
}

GradReductionTracker::GradReductionTracker(std::vector<GradBucket> buckets, int num_microbatches,
                                           GradReductionStart start)
    : buckets_(std::move(buckets)), num_microbatches_(num_microbatches), start_(start) {}

namespace {

// 1 + the last part of `parts` (in pass order) that holds an element of `b`; kWholeAction when
// some element of `b` is in no part. The parts' ranges are disjoint.
int AfterParts(const GradBucket& b,
               const std::vector<std::vector<std::pair<int64_t, int64_t>>>& parts) {
  int64_t covered = 0;
  int last = -1;
  for (int p = 0; p < static_cast<int>(parts.size()); ++p) {
    for (const auto& [begin, end] : parts[p]) {
      const int64_t n = std::min(end, b.end) - std::max(begin, b.begin);
      if (n <= 0) continue;
      covered += n;
      last = p;
    }
  }
  return covered == b.end - b.begin && last >= 0 ? last + 1 : GradBucket::kWholeAction;
}

}  // namespace

std::vector<GradBucket> OrderBucketsByParts(std::vector<GradBucket> buckets,
                                            const GradPartLayout& parts) {
  for (GradBucket& b : buckets) {
    auto it = parts.find(b.chunk);
    b.after_parts = it == parts.end() ? GradBucket::kWholeAction : AfterParts(b, it->second);
  }
  // Chunks are already in descending index: reorder within each chunk only.
  std::stable_sort(buckets.begin(), buckets.end(), [](const GradBucket& a, const GradBucket& b) {
    if (a.chunk != b.chunk) return a.chunk > b.chunk;
    if (a.after_parts != b.after_parts) return a.after_parts < b.after_parts;
    return a.begin < b.begin;
  });
  return buckets;
}

bool GradReductionTracker::Complete(int bucket) const {
  const GradBucket& b = buckets_[bucket];
  auto it = weight_actions_.find(b.chunk);
  if (it != weight_actions_.end() && it->second >= num_microbatches_) return true;
  if (start_ != GradReductionStart::kAsLayersComplete) return false;
  auto parts = parts_done_.find(b.chunk);
  return parts != parts_done_.end() && parts->second >= b.after_parts;
}

std::vector<int> GradReductionTracker::OnPartsFinished(int chunk, int parts) {
  int& done = parts_done_[chunk];
  done = std::max(done, parts);
  return IssueReady();
}

std::vector<int> GradReductionTracker::OnComputeFinished(ActionKind kind, int chunk) {
  if (kind == ActionKind::kBackwardWeight || kind == ActionKind::kBackward) {
    ++weight_actions_[chunk];
  }
  return IssueReady();
}

std::vector<int> GradReductionTracker::IssueReady() {
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
