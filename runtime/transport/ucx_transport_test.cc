// UcxTransport: tagged transfers between two workers arrive intact, in any posting
// order, and a size mismatch is an error rather than a silent truncation; limited to one
// network device (NetDeviceToward), it listens on that device's address only.
#include "runtime/transport/ucx_transport.h"

#include <dirent.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <future>
#include <mutex>
#include <numeric>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/transport/net_device.h"

namespace stagehand::runtime {
namespace {

struct Pair {
  std::unique_ptr<UcxTransport> a, b;
  Pair() {
    auto x = UcxTransport::Create();
    auto y = UcxTransport::Create();
    EXPECT_TRUE(x.ok()) << x.status();
    EXPECT_TRUE(y.ok()) << y.status();
    a = std::move(*x);
    b = std::move(*y);
    EXPECT_TRUE(a->Connect(1, b->address()).ok());
    EXPECT_TRUE(b->Connect(0, a->address()).ok());
  }
};

absl::Status Wait(std::future<absl::Status>& f) {
  if (f.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
    return absl::DeadlineExceededError("transfer did not finish in 20 s");
  }
  return f.get();
}

TEST(UcxTransport, LargeTransferArrivesIntactWhenReceivePostedLate) {
  Pair p;
  std::vector<float> sent(4 << 20);  // 16 MiB
  std::iota(sent.begin(), sent.end(), 0.5f);
  std::vector<float> got(sent.size());
  std::promise<absl::Status> s, r;
  auto sf = s.get_future(), rf = r.get_future();
  p.a->Send(1, 42, sent.data(), sent.size() * 4, [&](absl::Status st) { s.set_value(st); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  p.b->Receive(42, got.data(), got.size() * 4, [&](absl::Status st) { r.set_value(st); });
  ASSERT_TRUE(Wait(rf).ok());
  ASSERT_TRUE(Wait(sf).ok());
  EXPECT_EQ(got, sent);
  EXPECT_EQ(p.a->pending(), 0);
}

TEST(UcxTransport, TagsKeepTransfersApart) {
  Pair p;
  std::vector<float> one(1000, 1.0f), two(1000, 2.0f), got1(1000), got2(1000);
  std::promise<absl::Status> r1, r2;
  auto f1 = r1.get_future(), f2 = r2.get_future();
  p.b->Receive(2, got2.data(), 4000, [&](absl::Status st) { r2.set_value(st); });
  p.b->Receive(1, got1.data(), 4000, [&](absl::Status st) { r1.set_value(st); });
  p.a->Send(1, 1, one.data(), 4000, nullptr);
  p.a->Send(1, 2, two.data(), 4000, nullptr);
  ASSERT_TRUE(Wait(f1).ok());
  ASSERT_TRUE(Wait(f2).ok());
  EXPECT_EQ(got1, one);
  EXPECT_EQ(got2, two);
}

// A process that reached this worker without the launch's secret (here: another key) sends
// first under the same logical tag; the receive still takes only the keyed peer's message.
TEST(UcxTransport, AMessageFromAPeerWithoutTheKeyNeverMatchesAReceive) {
  auto a = UcxTransport::Create("", "launch secret");
  auto b = UcxTransport::Create("", "launch secret");
  auto foreign = UcxTransport::Create("", "a guess");
  ASSERT_TRUE(a.ok() && b.ok() && foreign.ok());
  ASSERT_TRUE((*a)->Connect(1, (*b)->address()).ok());
  ASSERT_TRUE((*foreign)->Connect(1, (*b)->address()).ok());
  EXPECT_EQ((*a)->WireTag(7), (*b)->WireTag(7));
  EXPECT_NE((*a)->WireTag(7), (*foreign)->WireTag(7));
  EXPECT_NE((*a)->WireTag(7), (*a)->WireTag(8));

  std::vector<float> forged(100, 9.0f), real(100, 1.0f), got(100, 0.0f);
  std::promise<absl::Status> forged_sent, real_sent, received;
  auto ff = forged_sent.get_future(), rf = real_sent.get_future(), gf = received.get_future();
  (*foreign)->Send(1, 7, forged.data(), 400, [&](absl::Status s) { forged_sent.set_value(s); });
  ASSERT_TRUE(Wait(ff).ok());
  (*b)->Receive(7, got.data(), 400, [&](absl::Status s) { received.set_value(s); });
  (*a)->Send(1, 7, real.data(), 400, [&](absl::Status s) { real_sent.set_value(s); });
  ASSERT_TRUE(Wait(gf).ok());
  ASSERT_TRUE(Wait(rf).ok());
  EXPECT_EQ(got, real);
}

// Messages no receive matches (a keyless peer's, whatever their size) are taken out of UCX's
// queue by the sweep: one larger than the run's largest is dropped unread at once, the others
// are held within the byte limit (beyond it dropped unread) and dropped when unclaimed for the
// claim timeout; each drop is one line. A member's payload that arrives before its receive is
// posted is held by a sweep too, and that later receive still gets it intact.
TEST(UcxTransport, UnmatchedMessagesAreDroppedAndLoggedWithinTheLimits) {
  auto a = UcxTransport::Create("", "launch secret");
  auto b = UcxTransport::Create("", "launch secret");
  auto foreign = UcxTransport::Create("", "a guess");
  ASSERT_TRUE(a.ok() && b.ok() && foreign.ok());
  ASSERT_TRUE((*a)->Connect(1, (*b)->address()).ok());
  ASSERT_TRUE((*foreign)->Connect(1, (*b)->address()).ok());
  std::mutex mu;
  std::vector<std::string> drops;
  UnexpectedMessageLimits limits;
  limits.max_message_bytes = 4000;
  limits.max_held_bytes = 8000;
  limits.claim_timeout_s = 1.0;
  limits.sweep_interval_s = 0.02;
  limits.on_drop = [&](const std::string& line) {
    std::lock_guard<std::mutex> lock(mu);
    drops.push_back(line);
  };
  (*b)->SetUnexpectedMessageLimits(limits);
  auto lines = [&] {
    std::lock_guard<std::mutex> lock(mu);
    return drops;
  };
  auto send = [](UcxTransport& from, uint64_t tag, const std::vector<char>& bytes) {
    std::promise<absl::Status> sent;
    auto f = sent.get_future();
    from.Send(1, tag, bytes.data(), bytes.size(), [&](absl::Status s) { sent.set_value(s); });
    return Wait(f);
  };
  // A member's payload before its receive; then junk: 1 MiB (over the largest), and five of
  // 3000 bytes (two fit the 8000 held bytes beside the member's 400; three do not).
  std::vector<float> real(100);
  std::iota(real.begin(), real.end(), 0.25f);
  std::vector<char> real_bytes(400);
  std::memcpy(real_bytes.data(), real.data(), 400);
  ASSERT_TRUE(send(**a, 7, real_bytes).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // a sweep holds it
  EXPECT_EQ((*b)->held_bytes(), 400);
  ASSERT_TRUE(send(**foreign, 8, std::vector<char>(1 << 20, 'x')).ok());
  for (uint64_t tag = 20; tag < 25; ++tag) {
    ASSERT_TRUE(send(**foreign, tag, std::vector<char>(3000, 'y')).ok());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ((*b)->held_bytes(), 400 + 2 * 3000);
  EXPECT_EQ((*b)->dropped_messages(), 4);
  std::vector<std::string> now = lines();
  ASSERT_EQ(now.size(), 4u);
  EXPECT_NE(now[0].find("1048576 bytes"), std::string::npos) << now[0];
  EXPECT_NE(now[0].find("larger than any message of this run (4000 bytes)"), std::string::npos)
      << now[0];
  for (int i = 1; i < 4; ++i) {
    EXPECT_NE(now[i].find("(the limit is 8000)"), std::string::npos) << now[i];
  }
  // The member's receive, posted late, gets its bytes from the held message.
  std::vector<float> got(100, 0.0f);
  std::promise<absl::Status> received;
  auto rf = received.get_future();
  (*b)->Receive(7, got.data(), 400, [&](absl::Status s) { received.set_value(s); });
  ASSERT_TRUE(Wait(rf).ok());
  EXPECT_EQ(got, real);
  EXPECT_EQ((*b)->held_bytes(), 2 * 3000);
  // Unclaimed for the claim timeout: the two held junk messages go.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ((*b)->held_bytes(), 0);
  now = lines();
  for (const std::string& line : now) std::printf("%s\n", line.c_str());  // as a worker logs
  ASSERT_EQ(now.size(), 6u);
  EXPECT_NE(now[5].find("no receive claimed it within 1 s"), std::string::npos) << now[5];
  // The transport still works after all that.
  std::promise<absl::Status> again;
  auto af = again.get_future();
  std::vector<float> got2(100, 0.0f);
  (*b)->Receive(9, got2.data(), 400, [&](absl::Status s) { again.set_value(s); });
  ASSERT_TRUE(send(**a, 9, real_bytes).ok());
  ASSERT_TRUE(Wait(af).ok());
  EXPECT_EQ(got2, real);
}

TEST(UcxTransport, ShortMessageIsAnError) {
  Pair p;
  std::vector<float> sent(10, 1.0f), got(20);
  std::promise<absl::Status> r;
  auto f = r.get_future();
  p.b->Receive(7, got.data(), got.size() * 4, [&](absl::Status st) { r.set_value(st); });
  p.a->Send(1, 7, sent.data(), sent.size() * 4, nullptr);
  absl::Status st = Wait(f);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("expected 80"), std::string::npos) << st;
}

TEST(UcxTransport, SendToUnknownPeerFails) {
  Pair p;
  float x = 0;
  std::promise<absl::Status> s;
  auto f = s.get_future();
  p.a->Send(9, 1, &x, 4, [&](absl::Status st) { s.set_value(st); });
  EXPECT_FALSE(Wait(f).ok());
}

// "address:port" of every TCP socket this process listens on (IPv4 and IPv6, hex as the kernel
// writes /proc/net/tcp{,6}; 0100007F is 127.0.0.1).
std::set<std::string> ListeningSockets() {
  std::set<std::string> inodes;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(d)) {
      char target[256] = {0};
      std::string link = std::string("/proc/self/fd/") + e->d_name;
      if (readlink(link.c_str(), target, sizeof(target) - 1) > 0 &&
          std::string(target).rfind("socket:[", 0) == 0) {
        inodes.insert(std::string(target).substr(8, std::string(target).size() - 9));
      }
    }
    closedir(d);
  }
  std::set<std::string> listening;
  for (const char* table : {"/proc/self/net/tcp", "/proc/self/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      std::istringstream f(line);
      std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
      f >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >>
          inode;
      if (state == "0A" && inodes.count(inode)) listening.insert(local);  // 0A: LISTEN
    }
  }
  return listening;
}

TEST(NetDevice, LoopbackIsReachedThroughLo) {
  absl::StatusOr<std::string> source = SourceAddressToward("127.0.0.1");
  ASSERT_TRUE(source.ok()) << source.status();
  EXPECT_EQ(*source, "127.0.0.1");
  absl::StatusOr<std::string> device = NetDeviceToward("127.0.0.1");
  ASSERT_TRUE(device.ok()) << device.status();
  EXPECT_EQ(*device, "lo");
}

TEST(NetDevice, AnAddressNoInterfaceHoldsIsNotFound) {
  EXPECT_EQ(InterfaceOfAddress("192.0.2.254").status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(NetDeviceToward("no-such-host.invalid").ok());
}

TEST(UcxTransport, LimitedToLoItListensOnLoopbackOnly) {
  ASSERT_EQ(std::getenv("UCX_NET_DEVICES"), nullptr) << "the test sets the device itself";
  const std::set<std::string> before = ListeningSockets();
  auto t = UcxTransport::Create("lo");
  ASSERT_TRUE(t.ok()) << t.status();
  std::set<std::string> opened;
  for (const std::string& s : ListeningSockets()) {
    if (!before.count(s)) opened.insert(s);
  }
  EXPECT_FALSE(opened.empty()) << "UCX opened no listener at all: nothing was checked";
  for (const std::string& s : opened) {
    EXPECT_EQ(s.substr(0, 9), "0100007F:") << "UCX listens on " << s << ", not on 127.0.0.1";
  }
  // Two transports limited to lo still talk.
  auto peer = UcxTransport::Create("lo");
  ASSERT_TRUE(peer.ok()) << peer.status();
  ASSERT_TRUE((*t)->Connect(1, (*peer)->address()).ok());
  ASSERT_TRUE((*peer)->Connect(0, (*t)->address()).ok());
  std::vector<float> sent(1000, 3.0f), got(1000);
  std::promise<absl::Status> r;
  auto rf = r.get_future();
  (*peer)->Receive(7, got.data(), 4000, [&](absl::Status st) { r.set_value(st); });
  (*t)->Send(1, 7, sent.data(), 4000, nullptr);
  ASSERT_TRUE(Wait(rf).ok());
  EXPECT_EQ(got, sent);
}

}  // namespace

}  // namespace stagehand::runtime
