// The join-token challenge-response (see auth_handshake.h), on OpenSSL's libcrypto.
#include "runtime/cluster/auth_handshake.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "absl/strings/str_cat.h"

namespace stagehand::runtime::cluster {
namespace {

constexpr absl::string_view kClientLabel = "stagehand gate v1: client proves the token";
constexpr absl::string_view kServerLabel = "stagehand gate v1: gate proves the token";

// HMAC-SHA256(token, label || server nonce || client nonce).
std::string Mac(absl::string_view token, absl::string_view label, absl::string_view server_nonce,
                absl::string_view client_nonce) {
  const std::string message = absl::StrCat(label, server_nonce, client_nonce);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  // The key may be empty; HMAC() still needs a non-null pointer.
  static const char kEmpty = 0;
  HMAC(EVP_sha256(), token.empty() ? &kEmpty : token.data(), static_cast<int>(token.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), out, &length);
  return std::string(reinterpret_cast<const char*>(out), length);
}

bool SameMac(absl::string_view a, absl::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

absl::string_view AsBytes(const Nonce& n) {
  return absl::string_view(reinterpret_cast<const char*>(n.data()), n.size());
}

}  // namespace

absl::StatusOr<Nonce> RandomNonce() {
  Nonce n;
  if (RAND_bytes(n.data(), static_cast<int>(n.size())) != 1) {
    return absl::InternalError("OpenSSL RAND_bytes failed to produce a handshake nonce");
  }
  return n;
}

std::string ServerHello(const Nonce& server_nonce) {
  return absl::StrCat(kHandshakeMagic, AsBytes(server_nonce));
}

absl::StatusOr<std::string> ClientHello(absl::string_view token, absl::string_view server_hello,
                                        const Nonce& client_nonce) {
  if (server_hello.size() != kServerHelloBytes ||
      server_hello.substr(0, kHandshakeMagic.size()) != kHandshakeMagic) {
    return absl::InvalidArgumentError(
        "did not answer as a Stagehand gate (wrong greeting): is it an older Stagehand, or "
        "another program?");
  }
  const absl::string_view server_nonce = server_hello.substr(kHandshakeMagic.size());
  return absl::StrCat(kHandshakeMagic, AsBytes(client_nonce),
                      Mac(token, kClientLabel, server_nonce, AsBytes(client_nonce)));
}

ServerJudgement JudgeClientHello(absl::string_view token, const Nonce& server_nonce,
                                 absl::string_view client_hello) {
  ServerJudgement j;
  j.verdict.assign(kVerdictBytes, '\0');
  if (client_hello.size() != kClientHelloBytes ||
      client_hello.substr(0, kHandshakeMagic.size()) != kHandshakeMagic) {
    j.status = absl::InvalidArgumentError("not a Stagehand worker's greeting (wrong magic)");
    return j;
  }
  const absl::string_view client_nonce = client_hello.substr(kHandshakeMagic.size(), kNonceBytes);
  const absl::string_view mac = client_hello.substr(kHandshakeMagic.size() + kNonceBytes);
  if (!SameMac(mac, Mac(token, kClientLabel, AsBytes(server_nonce), client_nonce))) {
    j.status = absl::PermissionDeniedError("wrong join token (its HMAC does not match)");
    return j;
  }
  j.verdict = absl::StrCat(absl::string_view("\x01", 1),
                           Mac(token, kServerLabel, AsBytes(server_nonce), client_nonce));
  return j;
}

absl::Status CheckVerdict(absl::string_view token, absl::string_view server_hello,
                          const Nonce& client_nonce, absl::string_view verdict) {
  if (verdict.size() != kVerdictBytes || server_hello.size() != kServerHelloBytes) {
    return absl::InvalidArgumentError("the gate's verdict has the wrong size");
  }
  if (verdict[0] != '\x01') {
    return absl::PermissionDeniedError("refused this worker: wrong join token");
  }
  const std::string expected =
      Mac(token, kServerLabel, server_hello.substr(kHandshakeMagic.size()), AsBytes(client_nonce));
  if (!SameMac(verdict.substr(1), expected)) {
    return absl::PermissionDeniedError(
        "could not prove it holds the join token: not this launch's coordinator");
  }
  return absl::OkStatus();
}

}  // namespace stagehand::runtime::cluster
