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

// A chunk of 100 floats: [0, 20) the embedding (in no part), layer 1 at [60, 100) and layer 0
// at [20, 60); W runs layer 1 first. Buckets of 30: [0,30) [30,60) [60,90) [90,100).
TEST(OrderBucketsByPartsTest, OrdersEachChunksBucketsByTheLastLayerTheyHold) {
  const GradPartLayout parts = {{0, {{{60, 100}}, {{20, 60}}}}};
  std::vector<GradBucket> ordered =
      OrderBucketsByParts({{1, 0, 10}, {0, 0, 30}, {0, 30, 60}, {0, 60, 90}, {0, 90, 100}}, parts);
  EXPECT_THAT(ordered,
              ElementsAre(GradBucket{1, 0, 10}, GradBucket{0, 60, 90}, GradBucket{0, 90, 100},
                          GradBucket{0, 30, 60}, GradBucket{0, 0, 30}));
  EXPECT_EQ(ordered[0].after_parts, GradBucket::kWholeAction);  // chunk 1 has no parts
  EXPECT_EQ(ordered[1].after_parts, 1);
  EXPECT_EQ(ordered[2].after_parts, 1);
  EXPECT_EQ(ordered[3].after_parts, 2);
  EXPECT_EQ(ordered[4].after_parts, GradBucket::kWholeAction);  // holds the embedding
}

TEST(OrderBucketsByPartsTest, ABucketAcrossTwoLayersWaitsForTheLaterPart) {
  const GradPartLayout parts = {{0, {{{50, 100}}, {{0, 50}}}}};
  std::vector<GradBucket> ordered = OrderBucketsByParts({{0, 40, 60}}, parts);
  EXPECT_EQ(ordered[0].after_parts, 2);
}

TEST(GradReductionTrackerTest, PerLayerIssuesABucketOnceItsLayersAreDoneInTheLastWeightPass) {
  const GradPartLayout parts = {{0, {{{60, 100}}, {{20, 60}}}}};
  GradReductionTracker tracker(
      OrderBucketsByParts({{0, 0, 30}, {0, 30, 60}, {0, 60, 90}, {0, 90, 100}}, parts), 2,
      GradReductionStart::kAsLayersComplete);
  EXPECT_THAT(tracker.OnComputeFinished(ActionKind::kBackwardWeight, 0), IsEmpty());
  EXPECT_THAT(tracker.OnPartsFinished(0, 1), ElementsAre(0, 1));  // layer 1: [60, 100)
  EXPECT_THAT(tracker.OnPartsFinished(0, 2), ElementsAre(2));     // layer 0: [30, 60)
  EXPECT_THAT(tracker.OnComputeFinished(ActionKind::kBackwardWeight, 0), ElementsAre(3));
  EXPECT_TRUE(!tracker.AllReduced());
}

TEST(GradReductionTrackerTest, PartsCountOnlyInThePerLayerMode) {
  const GradPartLayout parts = {{0, {{{0, 100}}}}};
  GradReductionTracker tracker(OrderBucketsByParts({{0, 0, 100}}, parts), 1,
                               GradReductionStart::kAsBucketsComplete);
  EXPECT_THAT(tracker.OnPartsFinished(0, 1), IsEmpty());
  EXPECT_THAT(tracker.OnComputeFinished(ActionKind::kBackward, 0), ElementsAre(0));
}

}  // namespace
}  // namespace stagehand::runtime
