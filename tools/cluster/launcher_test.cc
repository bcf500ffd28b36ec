// Unit tests of the launcher's pieces that need no processes: the environment forwarded to
// workers on other hosts and the ssh command line. Whole launches are in cluster_test.cc.
#include "tools/cluster/launcher.h"

#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stagehand::tools {
namespace {

using Env = std::vector<std::pair<std::string, std::string>>;

TEST(ForwardedEnvironmentTest, ForwardsKernelAndTransportSettingsOnly) {
  std::vector<std::string> text = {"PATH=/usr/bin", "OPENBLAS_CORETYPE=Haswell", "UCX_TLS=tcp",
                                   "HOME=/root",    "OMP_NUM_THREADS=2",         "GOMP_SPINCOUNT=0",
                                   "NOT_UCX_TLS=x", "UCX_NET_DEVICES=eth0:1=a"};
  std::vector<char*> variables;
  for (std::string& t : text) variables.push_back(t.data());
  variables.push_back(nullptr);
  EXPECT_EQ(ForwardedEnvironment(variables.data()), (Env{{"GOMP_SPINCOUNT", "0"},
                                                         {"OMP_NUM_THREADS", "2"},
                                                         {"OPENBLAS_CORETYPE", "Haswell"},
                                                         {"UCX_NET_DEVICES", "eth0:1=a"},
                                                         {"UCX_TLS", "tcp"}}));
  EXPECT_TRUE(ForwardedEnvironment(nullptr).empty());
}

TEST(SshCommandTest, QuotesEveryWordForTheRemoteShell) {
  const std::vector<std::string> command =
      SshCommand("ssh", "node-b", {{"OPENBLAS_CORETYPE", "Haswell"}, {"STAGEHAND_RANK", "2"}},
                 {"/opt/stagehand/worker", "--data=/srv/my corpus"});
  ASSERT_EQ(command.size(), 5u);
  EXPECT_EQ(command[0], "ssh");
  EXPECT_EQ(command[3], "node-b");
  EXPECT_EQ(command[4],
            "env 'OPENBLAS_CORETYPE=Haswell' 'STAGEHAND_RANK=2' '/opt/stagehand/worker' "
            "'--data=/srv/my corpus'");
}

}  // namespace
}  // namespace stagehand::tools
