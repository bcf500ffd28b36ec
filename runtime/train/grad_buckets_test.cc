#include "runtime/train/grad_buckets.h"

#include <memory>
#include <utility>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/gpt_chunk.h"
#include "runtime/collectives/in_process_collective.h"
#include "runtime/train/stage_work.h"

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

// Per-layer issue: chunk 0 is cut where its elements change part ([0, 20) in no part, [20, 60)
// part 1, [60, 100) part 0), each run into round(run / 16) equal pieces; chunk 3, not laid
// out, every 16 floats. No bucket holds two parts, so none waits for a later layer.
TEST(PlanGradBucketsTest, PerLayerBucketsAreCutAtPartBoundaries) {
  const double sixteen_floats = 1.0 / 16384;  // MiB
  const GradPartLayout parts = {{1, {{{60, 100}}, {{20, 40}, {40, 60}}}}};
  auto buckets = PlanGradBuckets({{1, 100}, {3, 40}}, sixteen_floats, parts);
  ASSERT_TRUE(buckets.ok());
  EXPECT_THAT(*buckets,
              ElementsAre(GradBucket{3, 0, 16}, GradBucket{3, 16, 32}, GradBucket{3, 32, 40},
                          GradBucket{1, 0, 20}, GradBucket{1, 20, 33}, GradBucket{1, 33, 46},
                          GradBucket{1, 46, 60}, GradBucket{1, 60, 73}, GradBucket{1, 73, 86},
                          GradBucket{1, 86, 100}));
  for (const GradBucket& b : OrderBucketsByParts(*buckets, parts)) {
    if (b.chunk != 1) continue;
    EXPECT_EQ(b.after_parts, b.begin >= 60   ? 1
                             : b.begin >= 20 ? 2
                                             : GradBucket::kWholeAction)
        << b.begin;
  }
}

// The model's first chunk ends the step's backward: its elements of no part (the embedding)
// and its pass's last part, leading its buffer, are one bucket whatever the cap (they are all
// final at the step's last moment; cutting them only queues more collectives after it). Its
// other parts, and every other chunk, are cut as before.
TEST(PlanGradBucketsTest, TheFirstChunksFinalTailIsOneBucket) {
  const double sixteen_floats = 1.0 / 16384;  // MiB
  // Pass order: part 0 = [60, 100) (the last layer), part 1 = [20, 60) (the first layer);
  // [0, 20) is in no part (the embedding).
  const GradPartLayout parts = {{0, {{{60, 100}}, {{20, 40}, {40, 60}}}},
                                {1, {{{60, 100}}, {{20, 40}, {40, 60}}}}};
  auto buckets = PlanGradBuckets({{0, 100}, {1, 100}}, sixteen_floats, parts);
  ASSERT_TRUE(buckets.ok());
  EXPECT_THAT(*buckets,
              ElementsAre(GradBucket{1, 0, 20}, GradBucket{1, 20, 33}, GradBucket{1, 33, 46},
                          GradBucket{1, 46, 60}, GradBucket{1, 60, 73}, GradBucket{1, 73, 86},
                          GradBucket{1, 86, 100}, GradBucket{0, 0, 60}, GradBucket{0, 60, 73},
                          GradBucket{0, 73, 86}, GradBucket{0, 86, 100}));
  const std::vector<GradBucket> ordered = OrderBucketsByParts(*buckets, parts);
  EXPECT_EQ(ordered.back(), (GradBucket{0, 0, 60}));  // issued last, with the whole action
  EXPECT_EQ(ordered.back().after_parts, GradBucket::kWholeAction);
  // When the buffer opens with another part, nothing is merged.
  const GradPartLayout later = {{0, {{{0, 40}}, {{60, 100}}}}};
  auto cut = PlanGradBuckets({{0, 100}}, sixteen_floats, later);
  ASSERT_TRUE(cut.ok());
  EXPECT_THAT(*cut, ElementsAre(GradBucket{0, 0, 13}, GradBucket{0, 13, 26}, GradBucket{0, 26, 40},
                                GradBucket{0, 40, 60}, GradBucket{0, 60, 73}, GradBucket{0, 73, 86},
                                GradBucket{0, 86, 100}));
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

// Runs one step of 2 microbatches of chunk `index` of a 4-layer model cut in two (0: the
// embedding, layers 0 and 1; 1: layers 2 and 3, the head) on a ModelStageWork without reports
// (I then W) and on one with them (the last W reporting: `fused` false; every B fused, layer by
// layer: true), and checks the reports: every part GradientParts names is final, bit for bit,
// when the step's last W or B reports it, the next part is not written yet, and both works end
// with the same gradients and input gradients.
void CheckReportsOfTheLastBackward(int index, bool fused) {
  const models::GptConfig config = models::UniformGpt(4, 16, 2, 256, 8, 11);
  const models::ChunkSpec spec = (*models::CutLayers(4, 2))[index];
  const models::ChunkOptions options{2, 8, 2};
  std::vector<int32_t> tokens(4096);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>(i * 7919 % 256);
  const WindowSampler sampler(&tokens, 2, 8, 3);
  InProcessGroupMembers group = MakeInProcessGroup(1);
  std::unique_ptr<Chunk> whole = *Chunk::Create(config, spec, options);
  std::unique_ptr<Chunk> parted = *Chunk::Create(config, spec, options);
  const DataParallelPlace place{0, 1, group.members[0].get(), 0};
  ModelStageWork whole_work({{index, whole.get()}}, 2, &sampler, 2, OptimizerConfig{}, {}, place);
  ModelStageWork parted_work({{index, parted.get()}}, 2, &sampler, 2, OptimizerConfig{}, {}, place);
  const GradPartLayout layout = parted_work.GradientParts();
  ASSERT_EQ(layout.size(), 1u);
  // (the head,) layer 3 or 1's MLP, its rest, layer 2 or 0's MLP, its rest
  const int num_parts = index == 1 ? 5 : 4;
  ASSERT_EQ(static_cast<int>(layout.at(index).size()), num_parts);
  std::vector<std::pair<int, std::vector<float>>> reports;  // parts done, gradients then
  parted_work.SetGradientProgress([&](int chunk, int n) {
    EXPECT_EQ(chunk, index);
    reports.emplace_back(n, std::vector<float>(parted->params().grads(),
                                               parted->params().grads() + parted->params().size()));
  });
  std::vector<Payload> input_grads[2];
  for (ModelStageWork* work : {&whole_work, &parted_work}) {
    work->BeginStep(1, 2);
    for (int mb = 0; mb < 2; ++mb) {
      Payload out, input_grad;
      double loss = 0;
      Payload activation(2 * 8 * 16);  // chunk 1's input, different in every row
      for (size_t i = 0; i < activation.size(); ++i) {
        activation[i] = 0.1f * static_cast<float>((i * 37 + mb * 11) % 23) - 1.1f;
      }
      ASSERT_TRUE(work->Forward(index, mb, index ? &activation : nullptr, &out, &loss).ok());
      Payload dout(2 * 8 * 16);
      for (size_t i = 0; i < dout.size(); ++i) dout[i] = 1e-3f * static_cast<float>(i % 17) - 8e-3f;
      const Payload* grad = index ? nullptr : &dout;
      if (work == &parted_work && fused) {
        ASSERT_TRUE(work->Backward(index, mb, grad, &input_grad).ok());
      } else {
        ASSERT_TRUE(work->BackwardInput(index, mb, grad, &input_grad).ok());
        ASSERT_TRUE(work->BackwardWeights(index, mb).ok());
      }
      input_grads[work == &parted_work].push_back(input_grad);
      if (work == &parted_work && mb == 0) {
        EXPECT_TRUE(reports.empty());  // not the step's last W
      }
    }
  }
  EXPECT_EQ(input_grads[0], input_grads[1]);
  const float* final_grads = whole->params().grads();
  ASSERT_EQ(static_cast<int>(reports.size()), num_parts);
  for (int64_t i = 0; i < whole->params().size(); ++i) {
    ASSERT_EQ(parted->params().grads()[i], final_grads[i]) << "element " << i;
  }
  for (int r = 0; r < num_parts; ++r) {
    EXPECT_EQ(reports[r].first, r + 1);
    for (int p = 0; p <= r; ++p) {
      for (const auto& [begin, end] : layout.at(index)[p]) {
        for (int64_t i = begin; i < end; ++i) {
          ASSERT_EQ(reports[r].second[i], final_grads[i]) << "report " << r << " element " << i;
        }
      }
    }
    if (r + 1 < num_parts) {  // the next part is not written yet: the report comes before it runs
      const auto& [begin, end] = layout.at(index)[r + 1].front();
      bool differs = false;
      for (int64_t i = begin; i < end && !differs; ++i) {
        differs = reports[r].second[i] != final_grads[i];
      }
      EXPECT_TRUE(differs) << "report " << r;
    }
  }
}

TEST(ModelStageWorkTest, ReportsEachPartOfTheLastWeightPassOnceItsGradientsAreFinal) {
  CheckReportsOfTheLastBackward(0, /*fused=*/false);
}

// The head's part (the final norm and the tied embedding's copy) comes first.
TEST(ModelStageWorkTest, ReportsTheHeadBeforeTheLayersOfTheLastChunk) {
  CheckReportsOfTheLastBackward(1, /*fused=*/false);
}

// The fused B completes its layers one by one, I then W of each (GptChunk::Backward), so its
// buckets go out while the layers below still compute.
TEST(ModelStageWorkTest, FusedBackwardReportsEachLayerAsItsInputAndWeightGradientsFinish) {
  CheckReportsOfTheLastBackward(0, /*fused=*/true);
  CheckReportsOfTheLastBackward(1, /*fused=*/true);
}

}  // namespace
}  // namespace stagehand::runtime
