// Gradient buckets of a data-parallel stage and when each may be reduced: the bucket plan
// (each held chunk's flat gradient cut into pieces of at most --grad_bucket_mb) and the
// tracker that issues REDUCE_GRAD for a bucket once the W/B actions that complete it have
// finished. Thread-free policy; not an executor (actors/stage_actor.cc runs the reductions on
// the stage's reduction lane) and not a collective (runtime/collectives does the sums).
//
// Every replica of a stage issues its buckets in one fixed order (chunks in descending index,
// the order backward completes them; pieces in ascending offset, or, per layer, in the order the
// weight-gradient pass completes them: OrderBucketsByParts), whatever the timing, so that the
// blocking collectives of the replicas always meet on the same bucket.
#ifndef STAGEHAND_RUNTIME_TRAIN_GRAD_BUCKETS_H_
#define STAGEHAND_RUNTIME_TRAIN_GRAD_BUCKETS_H_

#include <cstdint>
#include <limits>
#include <map>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/action.h"

namespace stagehand::runtime {

// PyTorch DDP's default bucket size.
inline constexpr double kDefaultGradBucketMb = 25;

// Elements [begin, end) of chunk `chunk`'s flat gradient buffer. `after_parts`: the bucket is
// final once that many parts of the chunk's last weight-gradient pass of the step finished
// (OrderBucketsByParts); kWholeAction: only once that whole W (or B) finished. Not compared.
struct GradBucket {
  static constexpr int kWholeAction = std::numeric_limits<int>::max();
  int chunk = 0;
  int64_t begin = 0, end = 0;
  int after_parts = kWholeAction;
  friend bool operator==(const GradBucket& a, const GradBucket& b) {
    return a.chunk == b.chunk && a.begin == b.begin && a.end == b.end;
  }
};

// A chunk's weight-gradient pass in parts, in the order it runs them (layers last to first):
// each part's element ranges [first, second) of the chunk's flat gradient, final once that part
// of the step's last W (or B) of the chunk ran. Elements in no part (the embedding, the final
// norm, the head) are final only with the whole action. Chunk -> its parts.
using GradPartLayout = std::map<int, std::vector<std::vector<std::pair<int64_t, int64_t>>>>;

// The buckets of a stage holding `gradient_floats` (chunk -> its gradient's float count), in
// issue order. `bucket_mb` (MiB of float32) must be positive; a chunk never shares a bucket
// with another (its gradient completes on its own).
//
// Chunks that `parts` lays out (per-layer issue) are cut where their elements change part
// (the elements of no part being one more part), so that no bucket waits for a layer other
// than its own: each run of one part is cut into round(run / bucket) pieces of equal size (at
// least one), so a bucket may exceed `bucket_mb` by up to half of it rather than leave a tiny
// remainder that costs a collective of its own (PyTorch DDP's buckets also pass their cap by a
// tensor). In chunk 0 (the model's first, whose last W / B is the step's last compute) the runs
// leading its buffer that are in no part or in the pass's last part (the embedding and the first
// layer's last part) are one bucket whatever the cap: they become final together as the
// backward ends, so cutting them only queues collectives after it. Other chunks are cut every
// `bucket_mb` from their first element.
absl::StatusOr<std::vector<GradBucket>> PlanGradBuckets(
    const std::map<int, int64_t>& gradient_floats, double bucket_mb,
    const GradPartLayout& parts = {});

// Per-layer issue: sets each bucket's after_parts (1 + the last part, in pass order, holding
// one of its elements; kWholeAction when an element is in no part) and reorders each chunk's
// buckets by (after_parts, begin), chunks still in descending index. Chunks `parts` lacks keep
// their order and kWholeAction. The plan (which elements each bucket holds) does not change.
std::vector<GradBucket> OrderBucketsByParts(std::vector<GradBucket> buckets,
                                            const GradPartLayout& parts);

// When REDUCE_GRAD goes out: each bucket as soon as the layers it holds are final in its
// chunk's last W / B (kAsLayersComplete, the default: buckets ordered by OrderBucketsByParts,
// fed by OnPartsFinished), as soon as its chunk's whole gradient is complete
// (kAsBucketsComplete), or every bucket only once the stage's whole backward finished (the
// baseline of the overlap benchmark, actors/grad_overlap_benchmark.cc).
enum class GradReductionStart { kAsLayersComplete, kAsBucketsComplete, kAfterBackward };

class GradReductionTracker {
 public:
  // `buckets` from PlanGradBuckets; each chunk's gradient is complete after
  // `num_microbatches` W or B actions of that chunk.
  GradReductionTracker(std::vector<GradBucket> buckets, int num_microbatches,
                       GradReductionStart start = GradReductionStart::kAsBucketsComplete);

  // A compute action of this stage finished: the indices (into buckets()) to issue now, in
  // issue order. A bucket is issued once complete and every bucket before it was issued.
  std::vector<int> OnComputeFinished(ActionKind kind, int chunk);
  // kAsLayersComplete: the step's last W (or B) of `chunk` finished its first `parts` parts
  // (StageWork::SetGradientProgress). The indices to issue now, as OnComputeFinished.
  std::vector<int> OnPartsFinished(int chunk, int parts);
  // Bucket `index`'s reduction finished.
  void OnReduced(int index);
  bool AllReduced() const { return reduced_ == static_cast<int>(buckets_.size()); }
  const std::vector<GradBucket>& buckets() const { return buckets_; }

 private:
  bool Complete(int bucket) const;  // its chunk's every W / B (or its parts) finished
  std::vector<int> IssueReady();
  std::vector<GradBucket> buckets_;
  int num_microbatches_;
  GradReductionStart start_;
  std::map<int, int> weight_actions_;  // chunk -> W/B actions finished this step
  std::map<int, int> parts_done_;      // chunk -> parts of its last W / B finished
  int issued_ = 0;
  int reduced_ = 0;
};

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_TRAIN_GRAD_BUCKETS_H_
