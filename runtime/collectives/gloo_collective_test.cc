#include "runtime/collectives/gloo_collective.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "gloo/common/error.h"
#include "gloo/rendezvous/hash_store.h"
#include "gloo/rendezvous/prefix_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/collectives/authenticated_store.h"
#include "runtime/collectives/in_process_collective.h"
#include "runtime/collectives/latency_collective.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::runtime {
namespace {

using ::stagehand::testing::IsOk;
using ::stagehand::testing::StatusIs;
using ::testing::HasSubstr;

// Runs `body(member, collective)` on `size` threads, one group member each, all connected
// through one in-process store.
void RunGroup(int size, const std::function<void(int, Collective&)>& body,
              const std::string& secret = "") {
  gloo::rendezvous::HashStore hash_store;
  AuthenticatedStore signed_store(hash_store, secret);
  gloo::rendezvous::Store& store =
      secret.empty() ? static_cast<gloo::rendezvous::Store&>(hash_store) : signed_store;
  std::vector<std::thread> threads;
  for (int m = 0; m < size; ++m) {
    threads.emplace_back([&, m] {
      GlooGroupOptions options;
      options.name = "test";
      options.member = m;
      options.size = size;
      options.timeout = std::chrono::seconds(20);
      auto collective = GlooCollective::Connect(store, options);
      ASSERT_THAT(collective.status(), IsOk());
      body(m, **collective);
    });
  }
  for (std::thread& t : threads) t.join();
}

std::vector<float> Random(int seed, size_t n) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng) * (seed % 3 == 0 ? 1e4f : 1e-3f);  // mixed magnitudes
  return v;
}

TEST(ShardTest, ContiguousAndBalanced) {
  EXPECT_EQ(ShardBegin(10, 3, 0), 0);
  EXPECT_EQ(ShardEnd(10, 3, 0), 4);
  EXPECT_EQ(ShardEnd(10, 3, 1), 7);
  EXPECT_EQ(ShardEnd(10, 3, 2), 10);
  EXPECT_EQ(ShardLength(2, 3, 2), 0);
}

TEST(SumInMemberOrderTest, IsLeftToRightInMemberOrder) {
  // 1e8 + 1 - 1e8 is 0 left to right in float32, and 1 if the last two were summed first.
  std::vector<float> a = {1e8f}, b = {1.0f}, c = {-1e8f}, out(1);
  ASSERT_THAT(SumInMemberOrder({a, b, c}, absl::MakeSpan(out)), IsOk());
  EXPECT_EQ(out[0], 0.0f);
  ASSERT_THAT(SumInMemberOrder({c, a, b}, absl::MakeSpan(out)), IsOk());
  EXPECT_EQ(out[0], 1.0f);
  std::vector<float> short_part = {};
  EXPECT_THAT(SumInMemberOrder({a, short_part}, absl::MakeSpan(out)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("member 1 has 0")));
}

// The property the data-parallel runtime relies on: Gloo's result is bitwise the in-process
// ordered sum, for a size that is not a multiple of the group.
TEST(GlooCollectiveTest, AllReduceIsBitwiseTheOrderedSum) {
  constexpr int kSize = 3;
  constexpr size_t kN = 1001;
  std::vector<std::vector<float>> inputs;
  for (int m = 0; m < kSize; ++m) inputs.push_back(Random(m, kN));
  std::vector<float> expected(kN);
  ASSERT_THAT(SumInMemberOrder({inputs[0], inputs[1], inputs[2]}, absl::MakeSpan(expected)),
              IsOk());
  std::vector<std::vector<float>> results(kSize);
  RunGroup(kSize, [&](int m, Collective& c) {
    results[m] = inputs[m];
    EXPECT_THAT(c.AllReduceSum(absl::MakeSpan(results[m])), IsOk());
  });
  for (int m = 0; m < kSize; ++m) {
    ASSERT_EQ(results[m].size(), kN);
    EXPECT_EQ(std::memcmp(results[m].data(), expected.data(), kN * sizeof(float)), 0) << m;
  }
}

TEST(GlooCollectiveTest, ReduceScatterGivesEachMemberItsShard) {
  constexpr int kSize = 4;
  constexpr size_t kN = 10;
  std::vector<std::vector<float>> inputs;
  for (int m = 0; m < kSize; ++m) inputs.push_back(Random(10 + m, kN));
  std::vector<float> expected(kN);
  ASSERT_THAT(
      SumInMemberOrder({inputs[0], inputs[1], inputs[2], inputs[3]}, absl::MakeSpan(expected)),
      IsOk());
  RunGroup(kSize, [&](int m, Collective& c) {
    std::vector<float> shard(ShardLength(kN, kSize, m));
    ASSERT_THAT(c.ReduceScatterSum(inputs[m], absl::MakeSpan(shard)), IsOk());
    for (size_t k = 0; k < shard.size(); ++k) {
      EXPECT_EQ(shard[k], expected[ShardBegin(kN, kSize, m) + k]);
    }
    std::vector<float> wrong(shard.size() + 1);
    EXPECT_THAT(c.ReduceScatterSum(inputs[m], absl::MakeSpan(wrong)),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("shard buffer")));
  });
}

// Member `m` of 3 sends (m + 1) * (j + 1) copies of the value 100 m + j to member j and
// checks what it receives; returns the buffers it used.
struct AllToAllVCase {
  std::vector<int64_t> send, recv;
  std::vector<float> in, out;
};
AllToAllVCase ExpectAllToAllVRoutes(int m, Collective& c) {
  constexpr int kSize = 3;
  AllToAllVCase x{std::vector<int64_t>(kSize), std::vector<int64_t>(kSize), {}, {}};
  for (int j = 0; j < kSize; ++j) {
    x.send[j] = (m + 1) * (j + 1);
    x.recv[j] = (j + 1) * (m + 1);
    x.in.insert(x.in.end(), x.send[j], 100.0f * m + j);
  }
  x.out.resize(x.recv[0] + x.recv[1] + x.recv[2]);
  EXPECT_THAT(c.AllToAllV(x.in, x.send, absl::MakeSpan(x.out), x.recv), IsOk());
  size_t at = 0;
  for (int j = 0; j < kSize; ++j) {
    for (int64_t k = 0; k < x.recv[j]; ++k) EXPECT_EQ(x.out[at++], 100.0f * j + m);
  }
  return x;
}

TEST(GlooCollectiveTest, AllToAllVRoutesCountsAndScalarsGather) {
  constexpr int kSize = 3;
  RunGroup(kSize, [&](int m, Collective& c) {
    AllToAllVCase x = ExpectAllToAllVRoutes(m, c);
    std::vector<double> values;
    ASSERT_THAT(c.AllGatherScalar(0.5 * m, &values), IsOk());
    EXPECT_THAT(values, ::testing::ElementsAre(0.0, 0.5, 1.0));
    std::vector<int64_t> bad = {1, 2};
    EXPECT_THAT(c.AllToAllV(x.in, bad, absl::MakeSpan(x.out), x.recv),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("2 send counts")));
  });
}

TEST(GlooCollectiveTest, AMissingMemberIsAnErrorNotAHang) {
  gloo::rendezvous::HashStore store;
  GlooGroupOptions options;
  options.name = "lonely";
  options.member = 0;
  options.size = 2;
  options.timeout = std::chrono::milliseconds(500);
  EXPECT_THAT(GlooCollective::Connect(store, options).status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("group 'lonely'")));
  options.member = 2;
  EXPECT_THAT(GlooCollective::Connect(store, options).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("member 2 of 2")));
}

// The TCP ports this process listens on (/proc/self/fd's socket inodes in /proc/self/net/tcp).
std::set<int> ListeningPorts() {
  std::set<std::string> inodes;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(d)) {
      char target[256] = {0};
      const std::string link = std::string("/proc/self/fd/") + e->d_name;
      if (readlink(link.c_str(), target, sizeof(target) - 1) > 0 &&
          std::string(target).rfind("socket:[", 0) == 0) {
        inodes.insert(std::string(target).substr(8, std::strlen(target) - 9));
      }
    }
    closedir(d);
  }
  std::set<int> ports;
  std::ifstream in("/proc/self/net/tcp");
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
    f >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >>
        inode;
    if (state == "0A" && inodes.count(inode)) {
      ports.insert(std::stoi(local.substr(local.find(':') + 1), nullptr, 16));
    }
  }
  return ports;
}

// Gloo's TCP pairs are not authenticated: each pair listens on its own port while the group
// connects, and its listening side takes the first connection. A stranger that connects to
// member 0's pair port first, sending 4 KiB of junk, before member 1 joins, never crashes the
// process and never yields a wrong result: each member either fails with an error naming the
// group (member 0 waits for bytes the stranger never sends; member 1's connect is refused or
// its peer never answers), or, had member 0 been the pair's connecting side (whose listener
// closes unused), connects to the real peer and gets the right values.
TEST(GlooCollectiveTest, AStrangerTakingAPairWhileTheGroupConnectsIsAnErrorNotACrash) {
  int taken = 0;
  for (int round = 0; round < 3; ++round) {
    gloo::rendezvous::HashStore store;
    const std::string name = "hijack" + std::to_string(round);
    const std::set<int> before = ListeningPorts();
    std::mutex mu;
    std::vector<absl::Status> results(2);
    auto member = [&](int m) {
      GlooGroupOptions options;
      options.name = name;
      options.member = m;
      options.size = 2;
      options.timeout = std::chrono::seconds(1);
      absl::Status status;
      auto collective = GlooCollective::Connect(store, options);
      std::vector<double> values;
      if (!collective.ok()) {
        status = collective.status();
      } else {
        status = (*collective)->AllGatherScalar(m + 0.5, &values);
        if (status.ok()) {
          EXPECT_EQ(values, (std::vector<double>{0.5, 1.5})) << name;
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      results[m] = status;
    };
    std::thread first(member, 0);
    std::set<int> fresh;
    for (int i = 0; i < 200 && fresh.empty(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      for (int port : ListeningPorts()) {
        if (!before.count(port)) fresh.insert(port);
      }
    }
    ASSERT_FALSE(fresh.empty()) << "member 0's pair never listened";
    std::vector<int> strangers;
    std::mt19937 random(round);
    for (int port : fresh) {
      int fd = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(port);
      if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) {
        std::string junk(4096, '\0');
        for (char& ch : junk) ch = static_cast<char>(random());
        send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
      }
      strangers.push_back(fd);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::thread second(member, 1);
    first.join();
    second.join();
    for (int fd : strangers) close(fd);
    bool failed = false;
    for (int m = 0; m < 2; ++m) {
      if (!results[m].ok()) {
        failed = true;
        EXPECT_THAT(results[m], StatusIs(absl::StatusCode::kUnavailable,
                                         HasSubstr("group '" + name + "' (member")));
      }
    }
    std::printf("round %d: %s; member 0: %s; member 1: %s\n", round,
                failed ? "the stranger took the pair" : "the stranger was not accepted",
                results[0].ToString().c_str(), results[1].ToString().c_str());
    taken += failed;
  }
  std::printf("the stranger took the pair in %d of 3 rounds\n", taken);
}

// The one-process runtime's collective (replicas as threads) gives bitwise what Gloo gives,
// for every operation the data-parallel runtime uses.
TEST(InProcessCollectiveTest, MatchesGlooBitwise) {
  constexpr int kSize = 3;
  constexpr size_t kN = 1001;
  std::vector<std::vector<float>> inputs;
  for (int m = 0; m < kSize; ++m) inputs.push_back(Random(20 + m, kN));
  std::vector<std::vector<float>> gloo(kSize), local(kSize);
  RunGroup(kSize, [&](int m, Collective& c) {
    gloo[m] = inputs[m];
    EXPECT_THAT(c.AllReduceSum(absl::MakeSpan(gloo[m])), IsOk());
  });
  InProcessGroupMembers group = MakeInProcessGroup(kSize);
  std::vector<std::thread> threads;
  for (int m = 0; m < kSize; ++m) {
    threads.emplace_back([&, m] {
      Collective& c = *group.members[m];
      local[m] = inputs[m];
      EXPECT_THAT(c.AllReduceSum(absl::MakeSpan(local[m])), IsOk());
      std::vector<double> values;
      EXPECT_THAT(c.AllGatherScalar(0.5 * m, &values), IsOk());
      EXPECT_THAT(values, ::testing::ElementsAre(0.0, 0.5, 1.0));
      ExpectAllToAllVRoutes(m, c);
    });
  }
  for (std::thread& t : threads) t.join();
  for (int m = 0; m < kSize; ++m) {
    EXPECT_EQ(std::memcmp(local[m].data(), gloo[m].data(), kN * sizeof(float)), 0) << m;
  }
}

TEST(InProcessCollectiveTest, AbortWakesAWaitingMember) {
  InProcessGroupMembers group = MakeInProcessGroup(2);
  std::vector<float> buffer(4, 1.0f);
  std::thread waiter([&] {
    EXPECT_THAT(group.members[0]->AllReduceSum(absl::MakeSpan(buffer)),
                StatusIs(absl::StatusCode::kAborted, HasSubstr("replica 1 failed")));
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  group.group->Abort("replica 1 failed");
  waiter.join();
  EXPECT_THAT(group.members[1]->AllGatherScalar(1.0, nullptr),
              StatusIs(absl::StatusCode::kAborted));
}

TEST(CollectiveArgumentsTest, CountsAndGatherOffsetsAreChecked) {
  EXPECT_THAT(CheckAllToAllCounts("send", {1, 2}, 2, 3), IsOk());
  EXPECT_THAT(CheckAllToAllCounts("send", {1, 2}, 3, 3),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("2 send counts for 3")));
  EXPECT_THAT(CheckAllToAllCounts("receive", {1, -1}, 2, 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("negative receive")));
  EXPECT_THAT(CheckAllToAllCounts("send", {1, 2}, 2, 4),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("sum to 3")));
  absl::StatusOr<std::vector<int64_t>> offsets = GatherOffsets(2, {3, 2, 0, 4}, 9, 1);
  ASSERT_THAT(offsets.status(), IsOk());
  EXPECT_EQ(*offsets, (std::vector<int64_t>{0, 3, 5, 5}));
  EXPECT_THAT(GatherOffsets(3, {3, 2}, 5, 1).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("its count is 2")));
  EXPECT_THAT(GatherOffsets(2, {3, 2}, 6, 1).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("sum to 5")));
  EXPECT_THAT(GatherOffsets(2, {3, 2}, 5, 2).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("member 2")));
}

TEST(AuthenticatedStoreTest, RoundTripsAndRefusesAnEntryWithoutTheSecret) {
  gloo::rendezvous::HashStore inner;
  AuthenticatedStore store(inner, "launch secret");
  store.set("a", {'x', 'y'});
  EXPECT_EQ(store.get("a"), (std::vector<char>{'x', 'y'}));
  AuthenticatedStore outsider(inner, "a guess");
  outsider.set("b", {'1', '2', '3'});
  try {
    store.get("b");
    ADD_FAILURE() << "an entry signed with another secret was accepted";
  } catch (const gloo::Exception& e) {
    EXPECT_THAT(e.what(), HasSubstr("'b' is not signed with the launch's secret"));
  }
  inner.set("c", {'z'});  // unsigned and too short for a signature
  EXPECT_THROW(store.get("c"), gloo::Exception);
  // A signed value moved under another key does not verify.
  inner.set("d", inner.get("a"));
  EXPECT_THROW(store.get("d"), gloo::Exception);
}

TEST(AuthenticatedStoreTest, AGroupConnectsThroughItAndAForgedAddressIsRefused) {
  RunGroup(
      2,
      [](int member, Collective& c) {
        std::vector<double> values;
        ASSERT_THAT(c.AllGatherScalar(member + 0.5, &values), IsOk());
        EXPECT_EQ(values, (std::vector<double>{0.5, 1.5}));
      },
      "launch secret");

  // Member 1's published addresses, forged by a process without the secret.
  gloo::rendezvous::HashStore inner;
  AuthenticatedStore forger(inner, "a guess");
  gloo::rendezvous::PrefixStore forged("forged", forger);
  forged.set("1", std::vector<char>(64, 'A'));
  AuthenticatedStore store(inner, "launch secret");
  GlooGroupOptions options;
  options.name = "forged";
  options.member = 0;
  options.size = 2;
  options.timeout = std::chrono::seconds(5);
  EXPECT_THAT(GlooCollective::Connect(store, options).status(),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("is not signed with the launch's secret")));
}

// --link_latency_us / --link_gbps for a cluster's collectives: the modelled time is latency +
// bytes at the bandwidth, every call waits at least that long, and the results are the wrapped
// collective's.
TEST(LatencyCollectiveTest, AddsTheModelledLinkAndKeepsTheResults) {
  InProcessGroupMembers group = MakeInProcessGroup(1);
  auto* inner = group.members[0].release();
  LatencyCollective link(std::unique_ptr<Collective>(inner), 20000, 0.001);
  EXPECT_DOUBLE_EQ(link.LinkMicros(0), 20000);
  EXPECT_DOUBLE_EQ(link.LinkMicros(125), 21000);  // 1000 bits at 1 Mbit/s: 1 ms
  EXPECT_EQ(link.size(), 1);
  const std::vector<float> in = {1, 2, 3};
  std::vector<float> out(3);
  const auto begin = std::chrono::steady_clock::now();
  ASSERT_THAT(link.AllToAllV(in, {3}, absl::MakeSpan(out), {3}), IsOk());
  const double waited_us =
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - begin).count();
  EXPECT_GE(waited_us, link.LinkMicros(12));
  EXPECT_EQ(out, in);
  std::vector<float> sum = {4, 5};
  ASSERT_THAT(link.AllReduceSum(absl::MakeSpan(sum)), IsOk());
  EXPECT_EQ(sum, (std::vector<float>{4, 5}));
}

}  // namespace
}  // namespace stagehand::runtime
