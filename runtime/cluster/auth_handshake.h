// The control plane's challenge-response on the launch's join token: fixed-size messages, HMAC-
// SHA256 (OpenSSL) over both sides' random nonces and a direction label, checked in constant time.
// Pure functions, no sockets and no threads (AuthGate moves the bytes); not an encryption layer:
// after both sides proved the token, the connection carries CAF's bytes in the clear.
//
// The exchange (every message has a fixed size, so a peer can make us read at most
// kClientHelloBytes before it is judged):
//   1. gate -> client   ServerHello: kMagic, server nonce                               (40 bytes)
//   2. client -> gate   ClientHello: kMagic, client nonce,
//                       HMAC(token, "client" label || server nonce || client nonce)     (72 bytes)
//   3. gate -> client   Verdict: 1 and HMAC(token, "server" label || both nonces), or 0 (33 bytes)
// The client accepts the gate only when the verdict's HMAC is right (mutual: a gate without
// the token cannot answer the client's fresh nonce); the labels stop one side's proof from
// being replayed as the other's.
#ifndef STAGEHAND_RUNTIME_CLUSTER_AUTH_HANDSHAKE_H_
#define STAGEHAND_RUNTIME_CLUSTER_AUTH_HANDSHAKE_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stagehand::runtime::cluster {

inline constexpr absl::string_view kHandshakeMagic = "SHGATE01";  // protocol and version
inline constexpr size_t kNonceBytes = 32;
inline constexpr size_t kMacBytes = 32;  // HMAC-SHA256
inline constexpr size_t kServerHelloBytes = 8 + kNonceBytes;
inline constexpr size_t kClientHelloBytes = 8 + kNonceBytes + kMacBytes;
inline constexpr size_t kVerdictBytes = 1 + kMacBytes;

using Nonce = std::array<uint8_t, kNonceBytes>;

// kNonceBytes from OpenSSL's RAND_bytes; an error when the generator fails.
absl::StatusOr<Nonce> RandomNonce();

// Step 1 (gate): the bytes to send first.
std::string ServerHello(const Nonce& server_nonce);

// Step 2 (client): the reply to `server_hello` (exactly kServerHelloBytes) proving `token`.
// InvalidArgument when `server_hello` is not a Stagehand gate's hello.
absl::StatusOr<std::string> ClientHello(absl::string_view token, absl::string_view server_hello,
                                        const Nonce& client_nonce);

// Step 3 (gate): judges `client_hello` (exactly kClientHelloBytes).
struct ServerJudgement {
  absl::Status status;  // OK: the client holds the token; otherwise why not
  std::string verdict;  // kVerdictBytes to send back either way
};
ServerJudgement JudgeClientHello(absl::string_view token, const Nonce& server_nonce,
                                 absl::string_view client_hello);

// Step 3 (client): OK when `verdict` accepts us and proves the gate holds `token`;
// PermissionDenied when the gate refused our token or cannot prove its own.
absl::Status CheckVerdict(absl::string_view token, absl::string_view server_hello,
                          const Nonce& client_nonce, absl::string_view verdict);

}  // namespace stagehand::runtime::cluster

#endif  // STAGEHAND_RUNTIME_CLUSTER_AUTH_HANDSHAKE_H_
