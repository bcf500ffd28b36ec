// SplitCores and AllowedCores.
#include "runtime/util/cores.h"

#include <thread>

#include "gtest/gtest.h"

namespace stagehand::runtime {
namespace {

TEST(SplitCoresTest, SharersSplitTheCoresUnlessTheUserChose) {
  EXPECT_EQ(SplitCores(4, 2, nullptr), 1);  // never below one thread
  EXPECT_EQ(SplitCores(4, 16, nullptr), 4);
  EXPECT_EQ(SplitCores(3, 16, ""), 5);
  EXPECT_EQ(SplitCores(1, 16, nullptr), 0);  // one sharer: OpenMP's default
  EXPECT_EQ(SplitCores(4, 16, "3"), 0);      // the user's setting stands
}

TEST(AllowedCoresTest, IsBetweenOneAndTheMachinesCores) {
  const int cores = AllowedCores();
  EXPECT_GE(cores, 1);
  EXPECT_LE(cores, static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
}

}  // namespace
}  // namespace stagehand::runtime
