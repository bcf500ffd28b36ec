// AuthGate: a TCP relay that lets a connection through only after the join-token handshake
// (auth_handshake.h). As the coordinator's gate it listens on the public address, makes every
// stranger prove the token before a byte of theirs reaches CAF's middleman (published on
// loopback only), and relays proven connections to it; as a worker's client side it listens on
// loopback for its own CAF, proves the token to the remote gate, and relays. Not a protocol
// parser: after the handshake it copies bytes both ways without looking at them.
//
// One thread, non-blocking sockets and poll(). What a stranger can cost: one of at most
// `max_pending` pending handshakes (more are closed at once), kClientHelloBytes of buffer and
// `handshake_timeout_s` of waiting; every refusal is logged with the peer's address, those
// still pending when the gate stops included. Relayed connections use two buffers of
// `buffer_bytes`.
#ifndef STAGEHAND_RUNTIME_CLUSTER_AUTH_GATE_H_
#define STAGEHAND_RUNTIME_CLUSTER_AUTH_GATE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace stagehand::runtime::cluster {

struct AuthGateOptions {
  enum class Role {
    kGate,    // accepted peers must prove the token; then relayed to `target`
    kClient,  // accepted (local) peers are relayed to `target` once we proved the token to it
  };
  Role role = Role::kGate;
  std::string token;
  std::string listen_host = "127.0.0.1";
  int listen_port = 0;  // 0: the kernel picks one (see AuthGate::port)
  std::string target_host = "127.0.0.1";
  int target_port = 0;
  double handshake_timeout_s = 5;
  int max_pending = 64;             // kGate: handshakes in progress at once
  size_t buffer_bytes = 256 << 10;  // per direction of a relayed connection
  // kClient: stop listening after the first relay is established (the worker's CAF connects
  // once), so that the loopback port is open only while joining.
  bool single_use = false;
  std::function<void(const std::string&)> log;  // one line per event; may be empty
};

class AuthGate {
 public:
  // Listens (errors name the address) and starts the thread.
  static absl::StatusOr<std::unique_ptr<AuthGate>> Start(AuthGateOptions options);
  ~AuthGate();  // stops the thread and closes every socket
  AuthGate(const AuthGate&) = delete;
  AuthGate& operator=(const AuthGate&) = delete;

  int port() const { return port_; }
  // kClient: why the remote gate last refused us (OK if it never did). PermissionDenied means
  // the tokens differ; retrying will not help.
  absl::Status last_refusal() const;
  int64_t refused() const { return refused_.load(); }
  int64_t relayed() const { return relayed_.load(); }

 private:
  struct Loop;
  AuthGate() = default;

  int port_ = 0;
  std::unique_ptr<Loop> loop_;
  mutable std::mutex mu_;
  absl::Status last_refusal_;
  std::atomic<int64_t> refused_{0};
  std::atomic<int64_t> relayed_{0};
  std::thread thread_;
};

}  // namespace stagehand::runtime::cluster

#endif  // STAGEHAND_RUNTIME_CLUSTER_AUTH_GATE_H_
