// Tests of the launcher's restart decisions: they follow rank 0's status lines only, so a
// reworded coordinator message changes nothing, and the human lines alone decide nothing.
#include "tools/cluster/attempt_log.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/cluster/status_line.h"

namespace stagehand::tools {
namespace {

using runtime::ClusterEvent;
using runtime::FormatStatusLine;

// Rank 0's output of an attempt that came up, checkpointed step 2 and lost rank 2 in
// step 4, with the human lines worded as `words` says.
std::vector<std::string> Rank0Output(const std::vector<std::string>& words) {
  return {words[0], FormatStatusLine({ClusterEvent::kClusterUp}),
          words[1], FormatStatusLine({ClusterEvent::kCheckpoint, 2}),
          words[2], FormatStatusLine({ClusterEvent::kRankLost, 4, 2, "s2 F c2 mb1 (step 4)"})};
}

RestartDecision Decide(const AttemptLog& log) {
  RestartInputs in;
  in.restart = 0;
  in.restarts = 1;
  in.cluster_up = log.cluster_up;
  in.checkpoint = log.checkpoint;
  return DecideRestart(in, "/ckpt");
}

TEST(AttemptLog, RestartFromTheLastCheckpointWhateverTheHumanWording) {
  const std::vector<std::vector<std::string>> wordings = {
      {"cluster: 4 workers joined and connected; running steps 1..6",
       "checkpoint: step 2 in /ckpt/step_00000002",
       "cluster: error: rank 2 (host h, pid 7) was lost: its connection closed during step 4; its "
       "last action: x"},
      {"All 4 ranks are in. Training steps 1 to 6.", "Saved step 2 (complete).",
       "rank two vanished"},
  };
  for (const auto& words : wordings) {
    AttemptLog log;
    for (const std::string& line : Rank0Output(words)) log.Observe(0, line);
    EXPECT_TRUE(log.cluster_up) << words[0];
    EXPECT_EQ(log.checkpoint, 2) << words[1];
    EXPECT_EQ(log.last_action[2], "s2 F c2 mb1 (step 4)");
    RestartDecision d = Decide(log);
    EXPECT_TRUE(d.restart);
    EXPECT_EQ(d.resume_step, 2);
    EXPECT_EQ(d.from, "the checkpoint of step 2 in /ckpt");
  }
}

TEST(AttemptLog, HumanLinesAloneDecideNothing) {
  AttemptLog log;
  for (const char* line :
       {"cluster: 4 workers joined and connected; running steps 1..6",
        "checkpoint: step 2 in /ckpt/step_00000002",
        "cluster: error: rank 2 (host h, pid 7) was lost: its last action: s2 F"}) {
    EXPECT_FALSE(log.Observe(0, line)) << line;
  }
  EXPECT_FALSE(log.cluster_up);
  EXPECT_EQ(log.checkpoint, -1);
  EXPECT_TRUE(log.last_action.empty());
  RestartDecision d = Decide(log);
  EXPECT_FALSE(d.restart);
  EXPECT_EQ(d.why_not, "the cluster failed before every worker had joined");
}

TEST(AttemptLog, StatusLinesOfOtherRanksAreHiddenButIgnored) {
  AttemptLog log;
  EXPECT_TRUE(log.Observe(3, FormatStatusLine({ClusterEvent::kCheckpoint, 9})));
  EXPECT_EQ(log.checkpoint, -1);
}

TEST(DecideRestart, WithoutACheckpointRestartsFromWhereTheFirstAttemptStarted) {
  RestartInputs in;
  in.restarts = 2;
  in.cluster_up = true;
  EXPECT_EQ(DecideRestart(in, "/c").resume_step, 0);
  in.resumed = true;
  RestartDecision d = DecideRestart(in, "/c");
  EXPECT_EQ(d.resume_step, -1);
  EXPECT_EQ(d.from, "the checkpoint it resumed from");
}

TEST(DecideRestart, NoneLeftOrInterruptedMeansNoRestart) {
  RestartInputs in;
  in.restart = 1;
  in.restarts = 1;
  in.cluster_up = true;
  EXPECT_FALSE(DecideRestart(in, "/c").restart);
  in.restart = 0;
  in.interrupted = true;
  EXPECT_FALSE(DecideRestart(in, "/c").restart);
}

}  // namespace
}  // namespace stagehand::tools
