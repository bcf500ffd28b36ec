// Tests for PayloadPool: reuse by size, the cap, and use from several threads.
#include "actors/cluster/payload_pool.h"

#include <thread>

#include "gtest/gtest.h"

namespace stagehand::actors::cluster {
namespace {

TEST(PayloadPoolTest, ATakeAfterAGiveOfTheSameSizeReusesTheBuffer) {
  PayloadPool pool;
  std::vector<float> a = pool.Take(1000);
  ASSERT_EQ(a.size(), 1000u);
  const float* storage = a.data();
  pool.Give(std::move(a));
  std::vector<float> other = pool.Take(999);  // another size: a new buffer
  EXPECT_EQ(other.size(), 999u);
  std::vector<float> again = pool.Take(1000);
  EXPECT_EQ(again.data(), storage);
  EXPECT_EQ(pool.taken(), 3);
  EXPECT_EQ(pool.reused(), 1);
}

TEST(PayloadPoolTest, KeepsAtMostTheCapPerSize) {
  PayloadPool pool(2);
  for (int i = 0; i < 5; ++i) pool.Give(std::vector<float>(16));
  for (int i = 0; i < 5; ++i) pool.Take(16);
  EXPECT_EQ(pool.reused(), 2);
}

TEST(PayloadPoolTest, SendAndReceiveThreadsShareIt) {
  PayloadPool pool(64);
  auto worker = [&pool] {
    for (int i = 0; i < 2000; ++i) {
      std::vector<float> b = pool.Take(256);
      ASSERT_EQ(b.size(), 256u);
      b[0] = static_cast<float>(i);
      pool.Give(std::move(b));
    }
  };
  std::thread t1(worker), t2(worker);
  t1.join();
  t2.join();
  EXPECT_EQ(pool.taken(), 4000);
  EXPECT_GE(pool.reused(), 3998);
}

}  // namespace
}  // namespace stagehand::actors::cluster
