#include "runtime/collectives/store_exchange.h"

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "gloo/rendezvous/hash_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/collectives/authenticated_store.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::runtime {
namespace {

using ::stagehand::testing::IsOk;
using ::stagehand::testing::StatusIs;
using ::testing::HasSubstr;

constexpr size_t kBytes = 128;  // NCCL_UNIQUE_ID_BYTES
constexpr std::chrono::milliseconds kTimeout{20000};

std::vector<char> Id(char fill) { return std::vector<char>(kBytes, fill); }

TEST(StoreExchangeTest, EveryMemberGetsMemberZerosBytesWhoeverArrivesFirst) {
  gloo::rendezvous::HashStore inner;
  AuthenticatedStore store(inner, "launch secret");
  constexpr int kMembers = 4;
  std::vector<absl::StatusOr<std::vector<char>>> got(kMembers, absl::UnknownError("not run"));
  int made = 0;
  std::vector<std::thread> threads;
  for (int m = kMembers - 1; m >= 0; --m) {  // members waiting before member 0 has set it
    threads.emplace_back([&, m] {
      got[m] = ShareFromMemberZero(
          store, "nccl.dp.s0", m, kBytes,
          [&]() -> absl::StatusOr<std::vector<char>> {
            ++made;
            return Id('z');
          },
          kTimeout);
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(made, 1);
  for (int m = 0; m < kMembers; ++m) {
    ASSERT_THAT(got[m].status(), IsOk()) << m;
    EXPECT_EQ(*got[m], Id('z')) << m;
  }
}

TEST(StoreExchangeTest, AValueOfAnotherSizeIsRefusedNamingTheKey) {
  gloo::rendezvous::HashStore store;
  store.set("nccl.x", std::vector<char>(17, 'a'));
  EXPECT_THAT(ShareFromMemberZero(store, "nccl.x", 1, kBytes, nullptr, kTimeout),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("'nccl.x': member 0 published 17 bytes, expected 128")));
  EXPECT_THAT(
      ShareFromMemberZero(
          store, "nccl.y", 0, kBytes,
          []() -> absl::StatusOr<std::vector<char>> { return std::vector<char>(3); }, kTimeout),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("made 3 bytes")));
}

TEST(StoreExchangeTest, NothingPublishedInTimeIsADeadlineNamingTheKey) {
  gloo::rendezvous::HashStore store;
  EXPECT_THAT(
      ShareFromMemberZero(store, "nccl.late", 2, kBytes, nullptr, std::chrono::milliseconds(50)),
      StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("'nccl.late'")));
}

TEST(StoreExchangeTest, AnEntryNotSignedWithTheSecretIsRefused) {
  gloo::rendezvous::HashStore inner;
  AuthenticatedStore store(inner, "launch secret");
  AuthenticatedStore forger(inner, "a guess");
  forger.set("nccl.s1", Id('f'));
  EXPECT_THAT(ShareFromMemberZero(store, "nccl.s1", 1, kBytes, nullptr, kTimeout),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("not signed")));
}

TEST(StoreExchangeTest, MemberZerosOwnFailureIsReturned) {
  gloo::rendezvous::HashStore store;
  EXPECT_THAT(ShareFromMemberZero(
                  store, "nccl.z", 0, kBytes,
                  []() -> absl::StatusOr<std::vector<char>> {
                    return absl::FailedPreconditionError("no GPU");
                  },
                  kTimeout),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no GPU")));
  EXPECT_THAT(ShareFromMemberZero(store, "nccl.z", -1, kBytes, nullptr, kTimeout),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace stagehand::runtime
