// Tests of the coordinator's rendezvous entries: set once, read back, bounded.
#include "runtime/cluster/rendezvous_table.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stagehand::runtime {
namespace {

using ::testing::HasSubstr;

TEST(RendezvousTable, AnEntryIsReadBackAndAMissingOneIsNull) {
  RendezvousTable table(2);
  EXPECT_EQ(table.Get("dp.s0/0"), nullptr);
  EXPECT_EQ(table.Set(1, "dp.s0/0", std::string("a\0b", 3)), "");
  ASSERT_NE(table.Get("dp.s0/0"), nullptr);
  EXPECT_EQ(*table.Get("dp.s0/0"), std::string("a\0b", 3));
}

TEST(RendezvousTable, AKeyIsSetOnceSoNoRankOverwritesAnother) {
  RendezvousTable table(2);
  EXPECT_EQ(table.Set(0, "k", "first"), "");
  EXPECT_THAT(table.Set(1, "k", "second"), HasSubstr("was set before"));
  EXPECT_EQ(*table.Get("k"), "first");
}

TEST(RendezvousTable, SizesRanksAndEntryCountsAreBounded) {
  RendezvousTable table(1);
  EXPECT_THAT(table.Set(1, "k", "v"), HasSubstr("from rank 1 of 1"));
  EXPECT_THAT(table.Set(0, "", "v"), HasSubstr("key of 0 bytes"));
  EXPECT_THAT(table.Set(0, std::string(kRendezvousMaxKeyBytes + 1, 'k'), "v"),
              HasSubstr("rendezvous key"));
  EXPECT_THAT(table.Set(0, "big", std::string(kRendezvousMaxValueBytes + 1, 'v')),
              HasSubstr("bytes (at most"));
  for (int i = 0; i < kRendezvousEntriesPerRank; ++i) {
    EXPECT_EQ(table.Set(0, "k" + std::to_string(i), "v"), "");
  }
  EXPECT_THAT(table.Set(0, "one more", "v"), HasSubstr("more than"));
  EXPECT_EQ(table.size(), static_cast<size_t>(kRendezvousEntriesPerRank));
}

}  // namespace
}  // namespace stagehand::runtime
