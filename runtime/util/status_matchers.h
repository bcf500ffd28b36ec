// GoogleTest matchers for absl::Status / absl::StatusOr: IsOk() and StatusIs(code[, message
// matcher]), as Abseil's status_matchers will provide once Debian ships them. Test-only.
#ifndef STAGEHAND_RUNTIME_UTIL_STATUS_MATCHERS_H_
#define STAGEHAND_RUNTIME_UTIL_STATUS_MATCHERS_H_

#include <ostream>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"

namespace stagehand::testing {

inline const absl::Status& GetStatus(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& status = ::stagehand::testing::GetStatus(arg);
  if (!status.ok()) *result_listener << "status is " << status;
  return status.ok();
}

// StatusIs(code) or StatusIs(code, message_matcher), e.g.
//   EXPECT_THAT(Parse(text), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("mb")));
MATCHER_P2(StatusIs, code, message_matcher,
           std::string("has code ") + absl::StatusCodeToString(code) + " and a message that " +
               ::testing::DescribeMatcher<std::string>(message_matcher)) {
  const absl::Status& status = ::stagehand::testing::GetStatus(arg);
  *result_listener << "status is " << status;
  return status.code() == code &&
         ::testing::Matches(message_matcher)(std::string(status.message()));
}

inline auto StatusIs(absl::StatusCode code) { return StatusIs(code, ::testing::_); }

}  // namespace stagehand::testing

// ASSERT_OK_AND_ASSIGN(lhs, expr): fails the test with the status when `expr` (a StatusOr) is
// not OK; otherwise moves its value into `lhs` (a declaration or an lvalue).
#define STAGEHAND_MATCHERS_CONCAT_INNER(a, b) a##b
#define STAGEHAND_MATCHERS_CONCAT(a, b) STAGEHAND_MATCHERS_CONCAT_INNER(a, b)
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  STAGEHAND_ASSERT_OK_AND_ASSIGN_IMPL(STAGEHAND_MATCHERS_CONCAT(status_or_, __LINE__), lhs, expr)
#define STAGEHAND_ASSERT_OK_AND_ASSIGN_IMPL(var, lhs, expr) \
  auto var = (expr);                                        \
  ASSERT_TRUE(var.ok()) << var.status();                    \
  lhs = std::move(var).value()

#endif  // STAGEHAND_RUNTIME_UTIL_STATUS_MATCHERS_H_
