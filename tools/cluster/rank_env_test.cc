// Rank environment: launcher variables, Slurm variables and node lists, hostfiles.
#include "tools/cluster/rank_env.h"

#include <map>

#include "gtest/gtest.h"

namespace stagehand::tools {
namespace {

std::function<std::string(const std::string&)> Env(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) {
    auto it = vars.find(name);
    return it == vars.end() ? std::string() : it->second;
  };
}

TEST(RankEnv, LauncherVariables) {
  auto env = ResolveRankEnv(Env({{"STAGEHAND_RANK", "2"},
                                 {"STAGEHAND_WORLD_SIZE", "4"},
                                 {"STAGEHAND_COORDINATOR", "127.0.0.1:41234"},
                                 {"STAGEHAND_JOIN_TOKEN", "abc"}}));
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->rank, 2);
  EXPECT_EQ(env->world_size, 4);
  EXPECT_EQ(env->coordinator_host, "127.0.0.1");
  EXPECT_EQ(env->coordinator_port, 41234);
  EXPECT_EQ(env->bind, "127.0.0.1");
  EXPECT_FALSE(env->from_slurm);
}

TEST(RankEnv, SlurmVariablesNameRankZerosNodeAsCoordinator) {
  auto env = ResolveRankEnv(Env({{"SLURM_PROCID", "5"},
                                 {"SLURM_NTASKS", "8"},
                                 {"SLURM_JOB_NODELIST", "gpu[03-04,10]"},
                                 {"SLURM_JOB_ID", "123456"},
                                 {"STAGEHAND_JOIN_TOKEN", "t"}}));
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_TRUE(env->from_slurm);
  EXPECT_EQ(env->rank, 5);
  EXPECT_EQ(env->world_size, 8);
  EXPECT_EQ(env->coordinator_host, "gpu03");
  EXPECT_EQ(env->coordinator_port, kSlurmPortBase + 3456);
  EXPECT_EQ(env->bind, "0.0.0.0");
}

TEST(RankEnv, SlurmPortCanBeGiven) {
  auto env = ResolveRankEnv(Env({{"SLURM_PROCID", "0"},
                                 {"SLURM_NTASKS", "2"},
                                 {"SLURM_NODELIST", "a,b"},
                                 {"STAGEHAND_PORT", "5000"},
                                 {"STAGEHAND_JOIN_TOKEN", "t"}}));
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->coordinator_host, "a");
  EXPECT_EQ(env->coordinator_port, 5000);
}

TEST(RankEnv, MissingTokenIsAnError) {
  auto env = ResolveRankEnv(Env(
      {{"STAGEHAND_RANK", "0"}, {"STAGEHAND_WORLD_SIZE", "1"}, {"STAGEHAND_COORDINATOR", "h:1"}}));
  ASSERT_FALSE(env.ok());
  EXPECT_NE(env.status().message().find("STAGEHAND_JOIN_TOKEN"), std::string::npos);
}

TEST(RankEnv, RankOutOfRangeAndBadNumbersAreErrors) {
  EXPECT_FALSE(ResolveRankEnv(Env({{"STAGEHAND_RANK", "4"},
                                   {"STAGEHAND_WORLD_SIZE", "4"},
                                   {"STAGEHAND_COORDINATOR", "h:1"},
                                   {"STAGEHAND_JOIN_TOKEN", "t"}}))
                   .ok());
  auto bad = ResolveRankEnv(Env({{"STAGEHAND_RANK", "x"},
                                 {"STAGEHAND_WORLD_SIZE", "4"},
                                 {"STAGEHAND_COORDINATOR", "h:1"},
                                 {"STAGEHAND_JOIN_TOKEN", "t"}}));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("STAGEHAND_RANK='x'"), std::string::npos);
  EXPECT_FALSE(ResolveRankEnv(Env({{"STAGEHAND_JOIN_TOKEN", "t"}})).ok());
}

TEST(RankEnv, LocalRankFromTheLauncherOrSlurm) {
  std::map<std::string, std::string> vars = {{"STAGEHAND_RANK", "3"},
                                             {"STAGEHAND_WORLD_SIZE", "4"},
                                             {"STAGEHAND_COORDINATOR", "h:1"},
                                             {"STAGEHAND_JOIN_TOKEN", "t"}};
  auto env = ResolveRankEnv(Env(vars));
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->local_rank, 0);  // not given: the first on its host
  vars["SLURM_LOCALID"] = "2";
  env = ResolveRankEnv(Env(vars));
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->local_rank, 2);
  vars["STAGEHAND_LOCAL_RANK"] = "1";  // the launcher's wins
  env = ResolveRankEnv(Env(vars));
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->local_rank, 1);
  for (const char* bad : {"-1", "4", "x"}) {
    vars["STAGEHAND_LOCAL_RANK"] = bad;
    env = ResolveRankEnv(Env(vars));
    EXPECT_FALSE(env.ok()) << bad;
    if (!env.ok())
      EXPECT_NE(env.status().message().find("STAGEHAND_LOCAL_RANK"), std::string::npos);
  }
}

TEST(LocalRanks, CountEachHostsRanksInOrder) {
  EXPECT_EQ(LocalRanks({}, 3), (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(LocalRanks({"a", "a", "b", "a", "b"}, 5), (std::vector<int>{0, 1, 0, 2, 1}));
}

TEST(NodeList, ExpandsRangesWithPaddingAndPlainNames) {
  auto nodes = ExpandNodeList("n1,gpu[01-03,07],x");
  ASSERT_TRUE(nodes.ok()) << nodes.status();
  EXPECT_EQ(*nodes, (std::vector<std::string>{"n1", "gpu01", "gpu02", "gpu03", "gpu07", "x"}));
  EXPECT_FALSE(ExpandNodeList("gpu[01-").ok());
  EXPECT_FALSE(ExpandNodeList("gpu[3-1]").ok());
  EXPECT_FALSE(ExpandNodeList("").ok());
}

TEST(Hostfile, SlotsCommentsAndErrors) {
  auto slots = ParseHostfile("# cluster\nnode-a slots=2\n\nnode-b  # one\n");
  ASSERT_TRUE(slots.ok()) << slots.status();
  EXPECT_EQ(*slots, (std::vector<std::string>{"node-a", "node-a", "node-b"}));
  auto bad = ParseHostfile("node-a slots=0\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("line 1"), std::string::npos);
  EXPECT_FALSE(ParseHostfile("# nothing\n").ok());
}

TEST(RankEnv, RankTraceFileGoesBeforeTheJsonExtension) {
  EXPECT_EQ(RankTraceFile("/tmp/run.json", 3), "/tmp/run.rank3.json");
  EXPECT_EQ(RankTraceFile("/tmp/run.trace", 0), "/tmp/run.trace.rank0");
}

}  // namespace
}  // namespace stagehand::tools
