// Tests for profile-guided cuts: medians per chunk from trace spans, the FLOP split within a
// chunk, the cut moving layers away from the measured slow chunk, and errors.
#include "runtime/train/profile_partition.h"

#include <numeric>

#include "gtest/gtest.h"
#include "models/partition.h"
#include "runtime/trace/chrome_json.h"

namespace stagehand::runtime {
namespace {

trace::Span Compute(int64_t step, int chunk, ActionKind kind, double us) {
  trace::Span s;
  s.step = step;
  s.chunk = chunk;
  s.stage = chunk;
  s.kind = kind;
  s.end_us = us;
  return s;
}

// Two chunks, three steps; step 1 (warm-up) is 100 times slower and must not count.
trace::Trace TwoChunkTrace(double chunk0_us, double chunk1_us) {
  trace::Trace t;
  t.num_stages = t.num_chunks = 2;
  t.num_microbatches = 3;
  for (int64_t step = 1; step <= 3; ++step) {
    const double scale = step == 1 ? 100 : 1;
    for (int mb = 0; mb < 3; ++mb) {
      const double jitter = mb == 2 ? 50 : 0;  // one outlier per step: the median ignores it
      t.spans.push_back(Compute(step, 0, ActionKind::kForward, scale * chunk0_us + jitter));
      t.spans.push_back(Compute(step, 0, ActionKind::kBackward, scale * 2 * chunk0_us));
      t.spans.push_back(Compute(step, 1, ActionKind::kForward, scale * chunk1_us + jitter));
      t.spans.push_back(Compute(step, 1, ActionKind::kBackward, scale * 2 * chunk1_us));
    }
  }
  trace::Span send = Compute(2, 0, ActionKind::kSendForward, 1e6);  // not compute: ignored
  send.lane = trace::Lane::kSend;
  send.peer = 1;
  t.spans.push_back(send);
  return t;
}

TEST(ProfilePartitionTest, ChunkTimesAreMediansOfComputeSpansAfterTheFirstStep) {
  absl::StatusOr<std::vector<double>> us = ChunkMedianMicros(TwoChunkTrace(300, 100));
  ASSERT_TRUE(us.ok()) << us.status();
  EXPECT_EQ(*us, (std::vector<double>{900, 300}));  // F + B medians
}

TEST(ProfilePartitionTest, TheSlowChunkGivesUpLayersAndTimesSplitByFlops) {
  const models::GptConfig config = models::UniformGpt(4, 16, 2, 256, 8, 1);
  absl::StatusOr<ProfileCut> cut =
      ProfileCutFromTrace(TwoChunkTrace(300, 100), {2, 2}, config, 2, 8);
  ASSERT_TRUE(cut.ok()) << cut.status();
  const std::vector<double> flops = models::LayerCosts(config, 8);
  ASSERT_EQ(cut->layer_us.size(), 4u);
  EXPECT_NEAR(cut->layer_us[0] + cut->layer_us[1], 900, 1e-9);
  EXPECT_NEAR(cut->layer_us[2] + cut->layer_us[3], 300, 1e-9);
  EXPECT_NEAR(cut->layer_us[0] / cut->layer_us[1], flops[0] / flops[1], 1e-12);
  EXPECT_EQ(cut->layers_per_chunk, (std::vector<int>{1, 3}));
  // The FLOP estimate alone (the head's cost on the last layer) cuts the other way.
  EXPECT_EQ(models::BalancedCut(flops, 2), (std::vector<int>{3, 1}));
  EXPECT_EQ(DescribeProfileCut("profile:t.json", *cut).substr(0, 31),
            "profile:t.json: layers 1,3, mea");
}

TEST(ProfilePartitionTest, ReadsATraceFileWithItsRunsCut) {
  const std::string path = ::testing::TempDir() + "/profile_trace.json";
  ASSERT_TRUE(trace::WriteChromeJsonFile(TwoChunkTrace(100, 300), path).ok());
  const models::GptConfig config = models::UniformGpt(4, 16, 2, 256, 8, 1);
  absl::StatusOr<ProfileCut> equal = ProfilePartition("profile:" + path, config, 2, 8);
  ASSERT_TRUE(equal.ok()) << equal.status();
  EXPECT_EQ(equal->traced_cut, (std::vector<int>{2, 2}));
  EXPECT_EQ(equal->layers_per_chunk, (std::vector<int>{3, 1}));
  absl::StatusOr<ProfileCut> explicit_cut =
      ProfilePartition("profile:" + path + "@1,3", config, 2, 8);
  ASSERT_TRUE(explicit_cut.ok()) << explicit_cut.status();
  EXPECT_EQ(explicit_cut->traced_cut, (std::vector<int>{1, 3}));
  absl::StatusOr<ProfileCut> bad = ProfilePartition("profile:" + path + "@2,3", config, 2, 8);
  EXPECT_NE(bad.status().message().find("the traced run's cut"), std::string::npos)
      << bad.status();
}

TEST(ProfilePartitionTest, MismatchedTracesAndCutsAreErrorsNamingThem) {
  const models::GptConfig config = models::UniformGpt(4, 16, 2, 256, 8, 1);
  EXPECT_EQ(ProfileCutFromTrace(TwoChunkTrace(3, 1), {3, 2}, config, 2, 8).status().code(),
            absl::StatusCode::kInvalidArgument);
  trace::Trace no_f = TwoChunkTrace(3, 1);
  no_f.spans.erase(no_f.spans.begin());  // still F spans of chunk 0 in other microbatches
  EXPECT_TRUE(ChunkMedianMicros(no_f).ok());
  no_f.num_chunks = 3;
  EXPECT_NE(ChunkMedianMicros(no_f).status().message().find("no F span of chunk 2"),
            std::string::npos);
  absl::StatusOr<ProfileCut> missing =
      ProfilePartition("profile:/nonexistent/trace.json", config, 2, 8);
  EXPECT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("--partition=profile:/nonexistent/trace.json"),
            std::string::npos)
      << missing.status();
  EXPECT_TRUE(IsProfilePartition("profile:x"));
  EXPECT_FALSE(IsProfilePartition("balanced"));
}

}  // namespace
}  // namespace stagehand::runtime
