// Tests of AuthGate over real loopback sockets: a worker's client side and the coordinator's gate
// relay bytes once both hold the token; a wrong token, CAF-shaped garbage, silence and a flood
// are refused, logged with the peer's address, and never reach the target.
#include "runtime/cluster/auth_gate.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::runtime::cluster {
namespace {

using ::stagehand::testing::IsOk;
using ::stagehand::testing::StatusIs;

// A loopback listener standing in for CAF: echoes what it reads, counts connections and bytes.
class EchoTarget {
 public:
  EchoTarget() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(listen(fd_, 16), 0);
    socklen_t len = sizeof(a);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~EchoTarget() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }
  int port() const { return port_; }
  int connections() const { return connections_.load(); }
  int64_t bytes() const { return bytes_.load(); }

 private:
  void Serve() {
    std::vector<int> conns;
    while (!stop_) {
      std::vector<pollfd> fds = {{fd_, POLLIN, 0}};
      for (int c : conns) fds.push_back({c, POLLIN, 0});
      poll(fds.data(), fds.size(), 20);
      if (fds[0].revents & POLLIN) {
        conns.push_back(accept(fd_, nullptr, nullptr));
        ++connections_;
      }
      for (size_t i = 1; i < fds.size(); ++i) {
        if (!(fds[i].revents & POLLIN)) continue;
        char buf[4096];
        ssize_t n = recv(fds[i].fd, buf, sizeof(buf), 0);
        if (n > 0) {
          bytes_ += n;
          send(fds[i].fd, buf, n, MSG_NOSIGNAL);
        }
      }
    }
    for (int c : conns) close(c);
  }
  int fd_ = -1, port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::atomic<int64_t> bytes_{0};
  std::thread thread_;
};

int Connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

// Reads until `n` bytes, EOF or the 5 s receive timeout.
std::string Read(int fd, size_t n) {
  std::string got;
  char buf[4096];
  while (got.size() < n) {
    ssize_t r = recv(fd, buf, std::min(sizeof(buf), n - got.size()), 0);
    if (r <= 0) break;
    got.append(buf, r);
  }
  return got;
}

struct Log {
  std::mutex mu;
  std::vector<std::string> lines;
  std::function<void(const std::string&)> Sink() {
    return [this](const std::string& l) {
      std::lock_guard<std::mutex> lock(mu);
      lines.push_back(l);
    };
  }
  int Count(const std::string& part) {
    std::lock_guard<std::mutex> lock(mu);
    int n = 0;
    for (const std::string& l : lines) n += l.find(part) != std::string::npos;
    return n;
  }
  std::string All() {
    std::lock_guard<std::mutex> lock(mu);
    std::string s;
    for (const std::string& l : lines) s += l + "\n";
    return s;
  }
};

std::unique_ptr<AuthGate> StartGate(int target, Log& log, double timeout_s = 5,
                                    int max_pending = 64) {
  AuthGateOptions o;
  o.role = AuthGateOptions::Role::kGate;
  o.token = "launch-token";
  o.target_port = target;
  o.handshake_timeout_s = timeout_s;
  o.max_pending = max_pending;
  o.log = log.Sink();
  auto gate = AuthGate::Start(o);
  EXPECT_THAT(gate.status(), IsOk());
  return gate.ok() ? std::move(*gate) : nullptr;
}

std::unique_ptr<AuthGate> StartClient(int gate_port, const std::string& token, Log& log) {
  AuthGateOptions o;
  o.role = AuthGateOptions::Role::kClient;
  o.token = token;
  o.target_port = gate_port;
  o.single_use = true;
  o.log = log.Sink();
  auto client = AuthGate::Start(o);
  EXPECT_THAT(client.status(), IsOk());
  return client.ok() ? std::move(*client) : nullptr;
}

TEST(AuthGate, SameTokenRelaysBytesBothWays) {
  EchoTarget caf;
  Log gate_log, client_log;
  auto gate = StartGate(caf.port(), gate_log);
  auto client = StartClient(gate->port(), "launch-token", client_log);
  int fd = Connect(client->port());
  ASSERT_GE(fd, 0);
  const std::string message(100000, 'm');  // larger than one socket read
  ASSERT_EQ(send(fd, message.data(), message.size(), 0), static_cast<ssize_t>(message.size()));
  EXPECT_EQ(Read(fd, message.size()), message);
  close(fd);
  EXPECT_EQ(gate->relayed(), 1);
  EXPECT_EQ(gate->refused(), 0);
  EXPECT_THAT(client->last_refusal(), IsOk());
  EXPECT_EQ(gate_log.Count("proved the join token"), 1) << gate_log.All();
  // Single use: the client side stopped listening once relaying.
  EXPECT_LT(Connect(client->port()), 0);
}

TEST(AuthGate, WrongTokenIsRefusedLoggedWithTheAddressAndNeverReachesTheTarget) {
  EchoTarget caf;
  Log gate_log, client_log;
  auto gate = StartGate(caf.port(), gate_log);
  auto client = StartClient(gate->port(), "another-token", client_log);
  int fd = Connect(client->port());
  ASSERT_GE(fd, 0);
  send(fd, "hello", 5, MSG_NOSIGNAL);
  EXPECT_EQ(Read(fd, 5), "");  // closed, nothing echoed
  close(fd);
  for (int i = 0; i < 200 && gate->refused() < 1; ++i) {  // the gate logs after its verdict
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_THAT(client->last_refusal(), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_NE(std::string(client->last_refusal().message()).find("wrong join token"),
            std::string::npos);
  EXPECT_EQ(gate_log.Count("gate: refused 127.0.0.1:"), 1) << gate_log.All();
  EXPECT_EQ(gate_log.Count("wrong join token"), 1) << gate_log.All();
  EXPECT_EQ(caf.connections(), 0);
}

TEST(AuthGate, CafShapedGarbageAndRandomBytesNeverReachTheTarget) {
  EchoTarget caf;
  Log log;
  auto gate = StartGate(caf.port(), log);
  std::string empty_client_handshake(32, '\0');  // CAF 0.17 BASP: op 1, payload length 0
  empty_client_handshake[0] = 1;
  std::string huge_claim(32, '\0');  // op 1, payload length 0xffffffff, then bytes
  huge_claim[0] = 1;
  for (int i = 4; i < 8; ++i) huge_claim[i] = '\xff';
  huge_claim += std::string(4096, 'x');
  std::string random_bytes;
  for (int i = 0; i < 4096; ++i) random_bytes.push_back(static_cast<char>(i * 7919 % 251));
  for (const std::string& attack : {empty_client_handshake, huge_claim, random_bytes}) {
    int fd = Connect(gate->port());
    ASSERT_GE(fd, 0);
    EXPECT_EQ(Read(fd, 40).size(), 40u);  // the gate's greeting
    send(fd, attack.data(), attack.size(), MSG_NOSIGNAL);
    shutdown(fd, SHUT_WR);  // a peer that holds on instead meets the deadline (below)
    Read(fd, 1 << 20);      // until the gate closes it
    close(fd);
  }
  for (int i = 0; i < 100 && gate->refused() < 3; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(gate->refused(), 3) << log.All();
  EXPECT_EQ(log.Count("closed the connection after 32 of 72 greeting bytes"), 1) << log.All();
  EXPECT_EQ(log.Count("not a Stagehand worker's greeting"), 2) << log.All();
  EXPECT_EQ(caf.connections(), 0);
  EXPECT_EQ(caf.bytes(), 0);
}

TEST(AuthGate, SilentPeerIsClosedAtTheHandshakeDeadline) {
  EchoTarget caf;
  Log log;
  auto gate = StartGate(caf.port(), log, /*timeout_s=*/0.2);
  int fd = Connect(gate->port());
  ASSERT_GE(fd, 0);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(Read(fd, 1 << 20).size(), 40u);  // the greeting, then EOF at the deadline
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 2.0);
  close(fd);
  EXPECT_EQ(log.Count("no complete greeting within 0.2 s (0 of 72 bytes)"), 1) << log.All();
}

// A run can end while strangers are half-way through their greeting: the gate refuses and logs
// each of them as it stops, so every connection it accepted leaves a line.
TEST(AuthGate, HandshakesStillPendingWhenTheGateStopsAreRefusedAndLogged) {
  EchoTarget caf;
  Log log;
  auto gate = StartGate(caf.port(), log, /*timeout_s=*/30);
  std::vector<int> strangers;
  for (int i = 0; i < 3; ++i) {
    strangers.push_back(Connect(gate->port()));
    ASSERT_GE(strangers.back(), 0);
    EXPECT_EQ(Read(strangers.back(), 40).size(), 40u);  // the greeting: accepted and pending
  }
  EXPECT_EQ(gate->refused(), 0);
  gate.reset();
  EXPECT_EQ(log.Count("the gate closed before a complete greeting (0 of 72 bytes)"), 3)
      << log.All();
  EXPECT_EQ(log.Count("gate: refused 127.0.0.1:"), 3) << log.All();
  for (int fd : strangers) {
    EXPECT_EQ(Read(fd, 1), "");  // closed
    close(fd);
  }
  EXPECT_EQ(caf.connections(), 0);
}

TEST(AuthGate, AFloodBeyondThePendingLimitIsClosedAtOnceAndAWorkerStillGetsThrough) {
  EchoTarget caf;
  Log gate_log, client_log;
  auto gate = StartGate(caf.port(), gate_log, /*timeout_s=*/30, /*max_pending=*/16);
  std::vector<int> flood;
  for (int i = 0; i < 200; ++i) flood.push_back(Connect(gate->port()));
  for (int i = 0; i < 200 && gate->refused() < 184; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(gate->refused(), 184) << "the first 16 wait for their deadline; the rest are closed";
  EXPECT_EQ(gate_log.Count("16 handshakes already pending (the limit)"), 184);
  // While 16 silent handshakes hold every pending slot, nothing else is admitted...
  auto client = StartClient(gate->port(), "launch-token", client_log);
  int blocked = Connect(client->port());
  EXPECT_EQ(Read(blocked, 1), "");
  close(blocked);
  // ...and once the flood goes away a worker gets through.
  for (int fd : flood) close(fd);
  for (int i = 0; i < 200 && gate->refused() < 201; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  int fd = Connect(client->port());
  ASSERT_GE(fd, 0);
  send(fd, "ping", 4, MSG_NOSIGNAL);
  EXPECT_EQ(Read(fd, 4), "ping") << gate_log.All() << client_log.All();
  close(fd);
  EXPECT_EQ(caf.connections(), 1);
}

TEST(AuthGate, AnAddressThatCannotBeBoundIsNamed) {
  AuthGateOptions o;
  o.listen_host = "192.0.2.254";  // TEST-NET-1: not this machine's
  auto gate = AuthGate::Start(o);
  EXPECT_THAT(gate.status(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_NE(std::string(gate.status().message()).find("cannot listen on 192.0.2.254:0"),
            std::string::npos)
      << gate.status();
}

}  // namespace
}  // namespace stagehand::runtime::cluster
