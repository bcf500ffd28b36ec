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

// One thread against itself is one core's worth (timing noise aside), and several never add up
// to more than they are (each at most as fast as one alone, give or take noise).
TEST(MeasuredParallelThroughputTest, IsBoundedByTheThreads) {
  const double one = MeasuredParallelThroughput(1);
  EXPECT_GT(one, 0.5);
  EXPECT_LT(one, 1.5);
  const double two = MeasuredParallelThroughput(2);
  EXPECT_GT(two, 0.3);
  EXPECT_LT(two, 2.6);
}

}  // namespace
}  // namespace stagehand::runtime
