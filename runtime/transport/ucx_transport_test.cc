// UcxTransport: tagged transfers between two workers arrive intact, in any posting
// order, and a size mismatch is an error rather than a silent truncation.
#include "runtime/transport/ucx_transport.h"

#include <chrono>
#include <future>
#include <numeric>
#include <vector>

#include "gtest/gtest.h"

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

}  // namespace
}  // namespace stagehand::runtime
