// Tests of the coordinator's status lines: each event round-trips, anything else is not one.
#include "runtime/cluster/status_line.h"

#include "gtest/gtest.h"

namespace stagehand::runtime {
namespace {

TEST(StatusLine, CheckpointRoundTrips) {
  const std::string line = FormatStatusLine({ClusterEvent::kCheckpoint, 12, -1, ""});
  EXPECT_EQ(line, "@stagehand-status {\"v\":1,\"event\":\"checkpoint\",\"step\":12}");
  std::optional<ClusterStatus> s = ParseStatusLine(line);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->event, ClusterEvent::kCheckpoint);
  EXPECT_EQ(s->step, 12);
}

TEST(StatusLine, RankLostRoundTripsWithAnyLastActionText) {
  const std::string action = "s2 F c2 mb1 (step 4) \"quoted\"; and more";
  std::optional<ClusterStatus> s =
      ParseStatusLine(FormatStatusLine({ClusterEvent::kRankLost, -1, 2, action}));
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->event, ClusterEvent::kRankLost);
  EXPECT_EQ(s->rank, 2);
  EXPECT_EQ(s->last_action, action);
}

TEST(StatusLine, ClusterUpRoundTrips) {
  std::optional<ClusterStatus> s = ParseStatusLine(FormatStatusLine({ClusterEvent::kClusterUp}));
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->event, ClusterEvent::kClusterUp);
}

TEST(StatusLine, HumanLinesAndMalformedOnesAreNotStatusLines) {
  for (const char* line :
       {"checkpoint: step 4 in /tmp/x/step_00000004",
        "cluster: 4 workers joined and connected; running steps 1..6", "@stagehand-status not json",
        "@stagehand-status {\"v\":2,\"event\":\"cluster_up\"}",
        "@stagehand-status {\"v\":1,\"event\":\"checkpoint\"}",
        "@stagehand-status {\"v\":1,\"event\":\"rank_lost\",\"rank\":\"2\"}",
        "@stagehand-status {\"v\":1,\"event\":\"reboot\"}"}) {
    EXPECT_FALSE(ParseStatusLine(line).has_value()) << line;
  }
}

}  // namespace
}  // namespace stagehand::runtime
