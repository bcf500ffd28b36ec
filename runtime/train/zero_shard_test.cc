// ZeRO-1's owned ranges, and the reduce-scatter to owners / all-gather from owners over an
// in-process group (one thread per member): the owners' sums are AllReduceSum's bit for bit.
#include "runtime/train/zero_shard.h"

#include <cmath>
#include <functional>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/collectives/in_process_collective.h"

namespace stagehand::runtime {
namespace {

using ::testing::ElementsAre;

TEST(ZeroShardTest, OwnersPartitionEveryRangeInMemberOrder) {
  // 10 elements over 3 members: [0, 4), [4, 7), [7, 10).
  EXPECT_EQ(OwnedRange(10, 3, 1), (ElementRange{4, 7}));
  EXPECT_THAT(OwnerCounts(10, 3, {2, 8}), ElementsAre(2, 3, 1));
  EXPECT_THAT(OwnerCounts(10, 3, {5, 6}), ElementsAre(0, 1, 0));
  EXPECT_EQ(Intersect({0, 4}, {6, 9}).size(), 0);
}

// Runs `body(member)` on one thread per member of a fresh group of `size`.
void OnEveryMember(int size, const std::function<void(Collective&)>& body) {
  InProcessGroupMembers group = MakeInProcessGroup(size);
  std::vector<std::thread> threads;
  for (int m = 0; m < size; ++m) threads.emplace_back([&, m] { body(*group.members[m]); });
  for (std::thread& t : threads) t.join();
}

// Member m's buffer: values that do not add associatively in float.
std::vector<float> Buffer(int member, int n) {
  std::vector<float> b(n);
  for (int i = 0; i < n; ++i) b[i] = (i % 3 == 0 ? 1e8f : 0.1f) * (member + 1) + 0.3f * i;
  return b;
}

TEST(ZeroShardTest, OwnersGetExactlyTheAllReducedSumsOfTheirElements) {
  constexpr int kSize = 3, kN = 23;
  const ElementRange range{5, 19};
  std::vector<std::vector<float>> reduced(kSize), scattered(kSize);
  OnEveryMember(kSize, [&](Collective& group) {
    const int m = group.member();
    reduced[m] = Buffer(m, kN);
    ASSERT_TRUE(group.AllReduceSum(absl::MakeSpan(reduced[m])).ok());
  });
  OnEveryMember(kSize, [&](Collective& group) {
    const int m = group.member();
    scattered[m] = Buffer(m, kN);
    ASSERT_TRUE(ReduceScatterToOwners(group, absl::MakeSpan(scattered[m]), range).ok());
  });
  for (int m = 0; m < kSize; ++m) {
    const ElementRange owned = Intersect(range, OwnedRange(kN, kSize, m));
    const std::vector<float> mine = Buffer(m, kN);
    for (int i = 0; i < kN; ++i) {
      const bool summed = i >= owned.begin && i < owned.end;
      EXPECT_EQ(scattered[m][i], summed ? reduced[m][i] : mine[i]) << "member " << m << " at " << i;
    }
  }
}

TEST(ZeroShardTest, EveryMemberGetsTheOwnersValues) {
  constexpr int kSize = 3, kN = 17;
  for (const ElementRange range : {ElementRange{0, kN}, ElementRange{3, 11}}) {
    std::vector<std::vector<float>> out(kSize);
    OnEveryMember(kSize, [&](Collective& group) {
      const int m = group.member();
      out[m] = Buffer(m, kN);
      ASSERT_TRUE(AllGatherFromOwners(group, absl::MakeSpan(out[m]), range).ok());
    });
    for (int m = 0; m < kSize; ++m) {
      for (int i = 0; i < kN; ++i) {
        int owner = m;  // outside the range each member keeps its own values
        for (int j = 0; j < kSize && i >= range.begin && i < range.end; ++j) {
          const ElementRange owned = OwnedRange(kN, kSize, j);
          if (i >= owned.begin && i < owned.end) owner = j;
        }
        EXPECT_EQ(out[m][i], Buffer(owner, kN)[i]) << "member " << m << " at " << i;
      }
    }
  }
}

// A window of a sharded buffer (--ep: one piece of a chunk's dense or expert elements) is
// reduced and gathered exactly as the same elements of the whole buffer: the owners are the
// whole buffer's, and elements outside the window are never touched.
TEST(ZeroShardTest, AWindowIsShardedAsItsPlaceInTheWholeBuffer) {
  constexpr int kSize = 3, kN = 23, kAt = 6, kLength = 9;  // the window: [6, 15)
  const ElementRange range{8, 14};
  std::vector<std::vector<float>> whole(kSize), window(kSize);
  OnEveryMember(kSize, [&](Collective& group) {
    const int m = group.member();
    whole[m] = Buffer(m, kN);
    ASSERT_TRUE(ReduceScatterToOwners(group, absl::MakeSpan(whole[m]), range).ok());
    ASSERT_TRUE(AllGatherFromOwners(group, absl::MakeSpan(whole[m]), range).ok());
  });
  OnEveryMember(kSize, [&](Collective& group) {
    const int m = group.member();
    const std::vector<float> b = Buffer(m, kN);
    window[m].assign(b.begin() + kAt, b.begin() + kAt + kLength);
    const ShardWindow w{absl::MakeSpan(window[m]), kAt, kN};
    ASSERT_TRUE(ReduceScatterToOwners(group, w, range).ok());
    ASSERT_TRUE(AllGatherFromOwners(group, w, range).ok());
    EXPECT_FALSE(ReduceScatterToOwners(group, w, {5, 9}).ok());  // starts before the window
    EXPECT_FALSE(AllGatherFromOwners(group, ShardWindow{w.data, 20, kN}, {20, 21}).ok());
  });
  for (int m = 0; m < kSize; ++m) {
    for (int i = 0; i < kLength; ++i) {
      EXPECT_EQ(window[m][i], whole[m][kAt + i]) << "member " << m << " at " << kAt + i;
    }
  }
}

TEST(ZeroShardTest, DoublesArriveBitForBitInMemberOrder) {
  std::vector<std::vector<double>> all(2);
  OnEveryMember(2, [&](Collective& group) {
    const int m = group.member();
    const std::vector<double> mine = {1.0 / 3 + m, -1e-300 * (m + 1), std::nan("")};
    ASSERT_TRUE(AllGatherDoubles(group, mine, &all[m]).ok());
  });
  for (int m = 0; m < 2; ++m) {
    ASSERT_EQ(all[m].size(), 6u);
    EXPECT_EQ(all[m][0], 1.0 / 3);
    EXPECT_EQ(all[m][3], 1.0 / 3 + 1);
    EXPECT_EQ(all[m][4], -2e-300);
    EXPECT_TRUE(std::isnan(all[m][5]));
  }
}

TEST(ZeroShardTest, ARangeOutsideTheBufferIsRefused) {
  OnEveryMember(1, [&](Collective& group) {
    std::vector<float> b(4);
    EXPECT_FALSE(ReduceScatterToOwners(group, absl::MakeSpan(b), {2, 6}).ok());
    EXPECT_FALSE(AllGatherFromOwners(group, absl::MakeSpan(b), {-1, 2}).ok());
  });
}

}  // namespace
}  // namespace stagehand::runtime
