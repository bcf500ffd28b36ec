#include "runtime/train/grad_buckets.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stagehand::runtime {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

TEST(PlanGradBucketsTest, CutsEachChunkInIssueOrder) {
  // 1 MiB buckets hold 262144 floats.
  auto buckets = PlanGradBuckets({{0, 300000}, {3, 10}}, 1.0);
  ASSERT_TRUE(buckets.ok());
  EXPECT_THAT(*buckets, ElementsAre(GradBucket{3, 0, 10}, GradBucket{0, 0, 262144},
                                    GradBucket{0, 262144, 300000}));
}

TEST(PlanGradBucketsTest, RefusesANonPositiveSizeNamingTheFlag) {
  for (double mb : {0.0, -1.0, std::nan("")}) {
    auto buckets = PlanGradBuckets({{0, 10}}, mb);
    ASSERT_FALSE(buckets.ok());
    EXPECT_THAT(std::string(buckets.status().message()), ::testing::HasSubstr("--grad_bucket_mb"));
  }
}

TEST(GradReductionTrackerTest, IssuesABucketAfterItsChunksLastWeightGradient) {
  GradReductionTracker tracker({{1, 0, 5}, {0, 0, 5}, {0, 5, 8}}, 2);
  EXPECT_THAT(tracker.OnComputeFinished(ActionKind::kForward, 1), IsEmpty());
  EXPECT_THAT(tracker.OnComputeFinished(ActionKind::kBackwardInput, 1), IsEmpty());
  EXPECT_THAT(tracker.OnComputeFinished(ActionKind::kBackwardWeight, 1), IsEmpty());
  EXPECT_THAT(tracker.OnComputeFinished(ActionKind::kBackward, 1), ElementsAre(0));
  EXPECT_THAT(tracker.OnComputeFinished(ActionKind::kBackward, 0), IsEmpty());
  EXPECT_THAT(tracker.OnComputeFinished(ActionKind::kBackwardWeight, 0), ElementsAre(1, 2));
  EXPECT_FALSE(tracker.AllReduced());
  for (int b : {0, 1, 2}) tracker.OnReduced(b);
  EXPECT_TRUE(tracker.AllReduced());
}

// Whatever order the chunks complete in, buckets go out in the plan's order: replicas whose
// timing differs still meet on the same bucket.
TEST(GradReductionTrackerTest, AfterBackwardHoldsEveryBucketUntilTheLastChunkCompletes) {
  GradReductionTracker tracker({{1, 0, 5}, {0, 0, 5}}, 1, GradReductionStart::kAfterBackward);
  EXPECT_THAT(tracker.OnComputeFinished(ActionKind::kBackward, 1), IsEmpty());
  EXPECT_THAT(tracker.OnComputeFinished(ActionKind::kBackward, 0), ElementsAre(0, 1));
  EXPECT_THAT(tracker.OnComputeFinished(ActionKind::kBackward, 0), IsEmpty());
}

TEST(GradReductionTrackerTest, KeepsTheIssueOrderWhenALaterChunkCompletesFirst) {
  GradReductionTracker tracker({{1, 0, 5}, {0, 0, 5}}, 1);
  EXPECT_THAT(tracker.OnComputeFinished(ActionKind::kBackward, 0), IsEmpty());
  EXPECT_THAT(tracker.OnComputeFinished(ActionKind::kBackward, 1), ElementsAre(0, 1));
}

}  // namespace
}  // namespace stagehand::runtime
