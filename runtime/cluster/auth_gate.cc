// AuthGate: sockets, the poll loop, handshakes in progress and relays (see auth_gate.h).
#include "runtime/cluster/auth_gate.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <list>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/cluster/auth_handshake.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime::cluster {
namespace {

using Clock = std::chrono::steady_clock;

Clock::time_point After(double seconds) {
  return Clock::now() + std::chrono::microseconds(static_cast<int64_t>(seconds * 1e6));
}

int MillisUntil(Clock::time_point t) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(ms, 0, 1000));
}

void SetNonBlocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL, 0) | O_NONBLOCK); }

std::string PeerName(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "an unknown peer";
  char host[NI_MAXHOST], port[NI_MAXSERV];
  if (getnameinfo(reinterpret_cast<sockaddr*>(&addr), len, host, sizeof(host), port, sizeof(port),
                  NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return "an unknown peer";
  }
  return absl::StrCat(addr.ss_family == AF_INET6 ? absl::StrCat("[", host, "]") : host, ":", port);
}

absl::StatusOr<addrinfo*> Resolve(const std::string& host, int port, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  addrinfo* found = nullptr;
  if (int e = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found); e != 0) {
    return absl::UnavailableError(absl::StrCat("cannot resolve ", host, ": ", gai_strerror(e)));
  }
  return found;
}

absl::StatusOr<int> Listen(const std::string& host, int port) {
  ASSIGN_OR_RETURN(addrinfo * found, Resolve(host, port, true));
  std::string why = "no address";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0) {
      freeaddrinfo(found);
      SetNonBlocking(fd);
      return fd;
    }
    why = std::strerror(errno);
    close(fd);
  }
  freeaddrinfo(found);
  return absl::UnavailableError(absl::StrCat("cannot listen on ", host, ":", port, ": ", why));
}

// A connected non-blocking socket, or why not within `timeout_s`.
absl::StatusOr<int> ConnectTo(const std::string& host, int port, double timeout_s) {
  ASSIGN_OR_RETURN(addrinfo * found, Resolve(host, port, false));
  std::string why = "no address";
  const Clock::time_point deadline = After(timeout_s);
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) continue;
    int err = connect(fd, a->ai_addr, a->ai_addrlen) == 0 ? 0 : errno;
    if (err == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      err = ETIMEDOUT;
      while (Clock::now() < deadline) {
        if (poll(&p, 1, MillisUntil(deadline)) > 0) {
          socklen_t len = sizeof(err);
          getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
          break;
        }
      }
    }
    if (err == 0) {
      freeaddrinfo(found);
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      return fd;
    }
    why = std::strerror(err);
    close(fd);
  }
  freeaddrinfo(found);
  return absl::UnavailableError(absl::StrCat("cannot connect to ", host, ":", port, ": ", why));
}

// Reads exactly `n` bytes from non-blocking `fd` before `deadline`.
absl::StatusOr<std::string> ReadExactly(int fd, size_t n, Clock::time_point deadline) {
  std::string got(n, '\0');
  size_t have = 0;
  while (have < n) {
    ssize_t r = recv(fd, got.data() + have, n - have, 0);
    if (r > 0) {
      have += static_cast<size_t>(r);
      continue;
    }
    if (r == 0)
      return absl::UnavailableError(absl::StrCat("closed after ", have, " of ", n, " bytes"));
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      return absl::UnavailableError(std::strerror(errno));
    }
    if (Clock::now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat("no answer (", have, " of ", n, " bytes)"));
    }
    pollfd p{fd, POLLIN, 0};
    poll(&p, 1, MillisUntil(deadline));
  }
  return got;
}

// The few bytes of a handshake message fit any fresh socket's send buffer.
bool SendAll(int fd, const std::string& bytes) {
  return send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
}

// The client side of the handshake on connected `fd`.
absl::Status ProveToken(int fd, const std::string& token, double timeout_s) {
  const Clock::time_point deadline = After(timeout_s);
  ASSIGN_OR_RETURN(const Nonce nonce, RandomNonce());
  ASSIGN_OR_RETURN(const std::string hello, ReadExactly(fd, kServerHelloBytes, deadline));
  ASSIGN_OR_RETURN(const std::string reply, ClientHello(token, hello, nonce));
  if (!SendAll(fd, reply)) return absl::UnavailableError("the gate closed the connection");
  ASSIGN_OR_RETURN(const std::string verdict, ReadExactly(fd, kVerdictBytes, deadline));
  return CheckVerdict(token, hello, nonce, verdict);
}

// One direction of a relay: bytes read from one socket, waiting to be written to the other.
struct Buffer {
  std::vector<char> data;
  size_t begin = 0, end = 0;
  bool eof = false;   // the source closed its side
  bool shut = false;  // ... and that was passed on (shutdown of the destination's write side)
  bool Room() const { return !eof && end < data.size(); }
  bool Waiting() const { return begin < end; }
};

}  // namespace

struct AuthGate::Loop {
  struct Pending {
    int fd = -1;
    std::string peer;
    Nonce nonce{};
    std::string got;
    Clock::time_point deadline;
  };
  struct Relay {
    int fd[2] = {-1, -1};
    std::string peer;
    Buffer from[2];  // from[i]: read from fd[i], written to fd[1 - i]
  };

  AuthGate* gate = nullptr;
  AuthGateOptions o;
  int listener = -1;
  int wake[2] = {-1, -1};
  std::atomic<bool> stopping{false};
  std::list<Pending> pending;
  std::list<Relay> relays;

  void Log(const std::string& line) const {
    if (o.log) o.log(line);
  }
  void Refuse(int fd, const std::string& peer, const std::string& why) {
    Log(absl::StrCat("gate: refused ", peer, ": ", why));
    ++gate->refused_;  // after the log line: a reader of the count finds the line
    close(fd);
  }
  void Run();
  void AcceptAll();
  void AcceptForGate(int fd, const std::string& peer);
  void AcceptForClient(int fd, const std::string& peer);
  void OnPendingReadable(std::list<Pending>::iterator it);
  void AddRelay(int outside, int inside, const std::string& peer);
  bool PumpRelay(Relay& r, const pollfd* p);  // false once the relay is over
  ~Loop();
};

AuthGate::Loop::~Loop() {
  for (Pending& p : pending) close(p.fd);
  for (Relay& r : relays) close(r.fd[0]), close(r.fd[1]);
  if (listener >= 0) close(listener);
  close(wake[0]);
  close(wake[1]);
}

void AuthGate::Loop::AcceptAll() {
  for (int i = 0; i < 256 && listener >= 0; ++i) {
    int fd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN, or a transient error such as EMFILE: next round
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    const std::string peer = PeerName(fd);
    if (o.role == AuthGateOptions::Role::kGate) {
      AcceptForGate(fd, peer);
    } else {
      AcceptForClient(fd, peer);
    }
  }
}

void AuthGate::Loop::AcceptForGate(int fd, const std::string& peer) {
  if (static_cast<int>(pending.size()) >= o.max_pending) {
    Refuse(fd, peer, absl::StrCat(pending.size(), " handshakes already pending (the limit)"));
    return;
  }
  absl::StatusOr<Nonce> nonce = RandomNonce();
  if (!nonce.ok() || !SendAll(fd, ServerHello(*nonce))) {
    Refuse(fd, peer,
           nonce.ok() ? "could not send the greeting" : std::string(nonce.status().message()));
    return;
  }
  pending.push_back(Pending{fd, peer, *nonce, std::string(), After(o.handshake_timeout_s)});
}

void AuthGate::Loop::AcceptForClient(int fd, const std::string& peer) {
  // Our own CAF on loopback: the handshake with the remote gate runs here, blocking this thread
  // for at most the handshake timeout (a worker's client side relays one connection).
  absl::StatusOr<int> remote = ConnectTo(o.target_host, o.target_port, o.handshake_timeout_s);
  absl::Status proven =
      remote.ok() ? ProveToken(*remote, o.token, o.handshake_timeout_s) : remote.status();
  if (!proven.ok()) {
    // Recorded before our CAF sees the connection close, so that it can ask why.
    const std::string why = absl::StrCat("the coordinator's gate at ", o.target_host, ":",
                                         o.target_port, ": ", proven.message());
    {
      std::lock_guard<std::mutex> lock(gate->mu_);
      gate->last_refusal_ = absl::Status(proven.code(), why);
    }
    if (remote.ok()) Log(absl::StrCat("gate: ", why));  // refusals; not "nobody listens yet"
    if (remote.ok()) close(*remote);
    close(fd);
    return;
  }
  Log(absl::StrCat("gate: proved the join token to the coordinator's gate at ", o.target_host, ":",
                   o.target_port, " (and it proved it back); relaying CAF's connection from ",
                   peer));
  AddRelay(*remote, fd, peer);
  if (o.single_use) {
    close(listener);
    listener = -1;
  }
}

void AuthGate::Loop::OnPendingReadable(std::list<Pending>::iterator it) {
  Pending& p = *it;
  char buf[kClientHelloBytes];
  ssize_t r = recv(p.fd, buf, kClientHelloBytes - p.got.size(), 0);
  if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  if (r <= 0) {
    Refuse(p.fd, p.peer,
           absl::StrCat("closed the connection after ", p.got.size(), " of ", kClientHelloBytes,
                        " greeting bytes"));
    pending.erase(it);
    return;
  }
  p.got.append(buf, static_cast<size_t>(r));
  if (p.got.size() < kClientHelloBytes) return;
  ServerJudgement j = JudgeClientHello(o.token, p.nonce, p.got);
  SendAll(p.fd, j.verdict);
  if (!j.status.ok()) {
    Refuse(p.fd, p.peer, std::string(j.status.message()));
    pending.erase(it);
    return;
  }
  absl::StatusOr<int> inside = ConnectTo(o.target_host, o.target_port, o.handshake_timeout_s);
  if (!inside.ok()) {
    Refuse(p.fd, p.peer, absl::StrCat("authenticated, but ", inside.status().message()));
  } else {
    Log(absl::StrCat("gate: ", p.peer, " proved the join token; relaying it to the control plane"));
    AddRelay(p.fd, *inside, p.peer);
  }
  pending.erase(it);
}

void AuthGate::Loop::AddRelay(int outside, int inside, const std::string& peer) {
  Relay& r = relays.emplace_back();
  r.fd[0] = outside;
  r.fd[1] = inside;
  r.peer = peer;
  for (Buffer& b : r.from) b.data.resize(o.buffer_bytes);
  ++gate->relayed_;
}

bool AuthGate::Loop::PumpRelay(Relay& r, const pollfd* p) {
  for (int i = 0; i < 2; ++i) {
    // An error, or a socket closed both ways after its last byte was read: nothing can pass.
    if ((p[i].revents & POLLERR) || ((p[i].revents & POLLHUP) && r.from[i].eof)) return false;
  }
  for (int i = 0; i < 2; ++i) {
    if ((p[i].revents & (POLLIN | POLLHUP | POLLERR)) && r.from[i].Room()) {
      Buffer& b = r.from[i];
      if (b.begin == b.end) b.begin = b.end = 0;
      ssize_t n = recv(r.fd[i], b.data.data() + b.end, b.data.size() - b.end, 0);
      if (n > 0)
        b.end += static_cast<size_t>(n);
      else if (n == 0)
        b.eof = true;
      else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        return false;
    }
  }
  for (int i = 0; i < 2; ++i) {
    Buffer& b = r.from[i];
    const int to = r.fd[1 - i];
    if (b.Waiting() && (p[1 - i].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t n = send(to, b.data.data() + b.begin, b.end - b.begin, MSG_NOSIGNAL);
      if (n > 0)
        b.begin += static_cast<size_t>(n);
      else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        return false;
    }
    if (b.begin == b.end && b.begin > 0 && !b.eof) b.begin = b.end = 0;
    if (b.eof && !b.Waiting() && !b.shut) {
      shutdown(to, SHUT_WR);
      b.shut = true;
    }
  }
  return !(r.from[0].shut && r.from[1].shut);
}

void AuthGate::Loop::Run() {
  std::vector<pollfd> fds;
  while (!stopping.load()) {
    fds.clear();
    fds.push_back({wake[0], POLLIN, 0});
    fds.push_back({listener, static_cast<short>(listener >= 0 ? POLLIN : 0), 0});
    Clock::time_point next = After(1.0);
    for (const Pending& p : pending) {
      fds.push_back({p.fd, POLLIN, 0});
      next = std::min(next, p.deadline);
    }
    for (const Relay& r : relays) {
      for (int i = 0; i < 2; ++i) {
        short events = (r.from[i].Room() ? POLLIN : 0) | (r.from[1 - i].Waiting() ? POLLOUT : 0);
        fds.push_back({r.fd[i], events, 0});
      }
    }
    const size_t polled_relays = relays.size();  // relays added below were not polled yet
    if (poll(fds.data(), fds.size(), MillisUntil(next)) < 0 && errno != EINTR) break;
    size_t k = 2;
    for (auto it = pending.begin(); it != pending.end(); ++k) {
      auto here = it++;
      if (fds[k].revents != 0) {
        OnPendingReadable(here);
      } else if (Clock::now() >= here->deadline) {
        Refuse(here->fd, here->peer,
               absl::StrCat("no complete greeting within ", o.handshake_timeout_s, " s (",
                            here->got.size(), " of ", kClientHelloBytes, " bytes)"));
        pending.erase(here);
      }
    }
    auto it = relays.begin();
    for (size_t n = 0; n < polled_relays; ++n, k += 2) {
      auto here = it++;
      if (!PumpRelay(*here, &fds[k])) {
        Log(absl::StrCat("gate: relayed connection of ", here->peer, " closed"));
        close(here->fd[0]);
        close(here->fd[1]);
        relays.erase(here);
      }
    }
    if (fds[1].revents & POLLIN) AcceptAll();  // last: the loops above index `fds` by position
  }
  // Stopping: a handshake still pending is refused like any other, so that every connection
  // the gate accepted leaves a line (a run can end while a stranger is half-way through).
  for (Pending& p : pending) {
    Refuse(p.fd, p.peer,
           absl::StrCat("the gate closed before a complete greeting (", p.got.size(), " of ",
                        kClientHelloBytes, " bytes)"));
  }
  pending.clear();
}

absl::StatusOr<std::unique_ptr<AuthGate>> AuthGate::Start(AuthGateOptions options) {
  std::unique_ptr<AuthGate> gate(new AuthGate());
  auto loop = std::make_unique<Loop>();
  loop->gate = gate.get();
  loop->o = std::move(options);
  if (pipe2(loop->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  ASSIGN_OR_RETURN(loop->listener, Listen(loop->o.listen_host, loop->o.listen_port));
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  getsockname(loop->listener, reinterpret_cast<sockaddr*>(&addr), &len);
  gate->port_ = ntohs(addr.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                                                 : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  gate->loop_ = std::move(loop);
  gate->thread_ = std::thread([l = gate->loop_.get()] { l->Run(); });
  return gate;
}

AuthGate::~AuthGate() {
  if (thread_.joinable()) {
    loop_->stopping = true;
    char c = 1;
    (void)!write(loop_->wake[1], &c, 1);
    thread_.join();
  }
}

absl::Status AuthGate::last_refusal() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_refusal_;
}

}  // namespace stagehand::runtime::cluster
