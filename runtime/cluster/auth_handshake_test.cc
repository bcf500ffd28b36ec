// Tests of the join-token challenge-response: both sides accept each other with the same token,
// and every way a peer without it can answer is refused.
#include "runtime/cluster/auth_handshake.h"

#include <string>

#include "gtest/gtest.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::runtime::cluster {
namespace {

using ::stagehand::testing::IsOk;
using ::stagehand::testing::StatusIs;

Nonce Fixed(uint8_t v) {
  Nonce n;
  n.fill(v);
  return n;
}

TEST(AuthHandshake, SameTokenIsAcceptedBothWays) {
  const Nonce s = Fixed(1), c = Fixed(2);
  const std::string hello = ServerHello(s);
  ASSERT_EQ(hello.size(), kServerHelloBytes);
  absl::StatusOr<std::string> reply = ClientHello("token", hello, c);
  ASSERT_THAT(reply.status(), IsOk());
  ASSERT_EQ(reply->size(), kClientHelloBytes);
  ServerJudgement j = JudgeClientHello("token", s, *reply);
  EXPECT_THAT(j.status, IsOk());
  ASSERT_EQ(j.verdict.size(), kVerdictBytes);
  EXPECT_THAT(CheckVerdict("token", hello, c, j.verdict), IsOk());
}

TEST(AuthHandshake, WrongClientTokenIsRefusedAndTheClientIsToldSo) {
  const Nonce s = Fixed(1), c = Fixed(2);
  const std::string hello = ServerHello(s);
  absl::StatusOr<std::string> reply = ClientHello("not-the-token", hello, c);
  ASSERT_THAT(reply.status(), IsOk());
  ServerJudgement j = JudgeClientHello("token", s, *reply);
  EXPECT_THAT(j.status, StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_NE(j.status.message().find("wrong join token"), std::string::npos);
  ASSERT_EQ(j.verdict.size(), kVerdictBytes);
  EXPECT_THAT(CheckVerdict("not-the-token", hello, c, j.verdict),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST(AuthHandshake, AProofForAnotherServerNonceIsRefused) {  // no replay of a recorded reply
  const Nonce c = Fixed(2);
  absl::StatusOr<std::string> recorded = ClientHello("token", ServerHello(Fixed(1)), c);
  ASSERT_THAT(recorded.status(), IsOk());
  EXPECT_THAT(JudgeClientHello("token", Fixed(3), *recorded).status,
              StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST(AuthHandshake, AGateWithoutTheTokenIsRefusedByTheClient) {
  const Nonce s = Fixed(1), c = Fixed(2);
  const std::string hello = ServerHello(s);
  absl::StatusOr<std::string> reply = ClientHello("token", hello, c);
  ASSERT_THAT(reply.status(), IsOk());
  // An impostor accepts anything and signs with another key...
  std::string forged = std::string(1, '\x01') + std::string(kMacBytes, 'x');
  EXPECT_THAT(CheckVerdict("token", hello, c, forged),
              StatusIs(absl::StatusCode::kPermissionDenied));
  // ...or reflects the client's own proof back (the labels differ).
  std::string reflected = std::string(1, '\x01') + reply->substr(8 + kNonceBytes);
  EXPECT_THAT(CheckVerdict("token", hello, c, reflected),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST(AuthHandshake, GreetingsOfTheWrongShapeAreRefused) {
  const Nonce s = Fixed(1), c = Fixed(2);
  EXPECT_THAT(ClientHello("token", "", c).status(), StatusIs(absl::StatusCode::kInvalidArgument));
  std::string caf_like(kServerHelloBytes, '\0');  // e.g. a CAF BASP server handshake
  EXPECT_THAT(ClientHello("token", caf_like, c).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  std::string basp_client_handshake(32, '\0');
  basp_client_handshake[0] = 1;
  EXPECT_THAT(JudgeClientHello("token", s, basp_client_handshake).status,
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(JudgeClientHello("token", s, std::string(kClientHelloBytes, '\xff')).status,
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(CheckVerdict("token", ServerHello(s), c, "\x01"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(AuthHandshake, NoncesAreFreshEachTime) {
  absl::StatusOr<Nonce> a = RandomNonce(), b = RandomNonce();
  ASSERT_THAT(a.status(), IsOk());
  ASSERT_THAT(b.status(), IsOk());
  EXPECT_NE(*a, *b);
}

}  // namespace
}  // namespace stagehand::runtime::cluster
