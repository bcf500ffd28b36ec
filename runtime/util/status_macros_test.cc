// Tests for RETURN_IF_ERROR / ASSIGN_OR_RETURN and the IsOk / StatusIs matchers.
// Not a test of absl::Status itself.
#include "runtime/util/status_macros.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/util/status_matchers.h"

namespace stagehand {
namespace {

using ::stagehand::testing::IsOk;
using ::stagehand::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

absl::StatusOr<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError(absl::StrCat(x, " is odd"));
  return x / 2;
}

absl::Status CheckEven(int x) { return Half(x).status(); }

absl::StatusOr<int> Quarter(int x) {
  ASSIGN_OR_RETURN(int half, Half(x));
  ASSIGN_OR_RETURN(int quarter, Half(half));
  return quarter;
}

absl::Status BothEven(int a, int b, int* calls) {
  ++*calls;
  RETURN_IF_ERROR(CheckEven(a));
  ++*calls;
  RETURN_IF_ERROR(CheckEven(b));
  ++*calls;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<int>> MakeBox(int x) { return std::make_unique<int>(x); }

absl::StatusOr<int> Unbox(int x) {
  ASSIGN_OR_RETURN(std::unique_ptr<int> box, MakeBox(x));  // move-only values move
  return *box;
}

TEST(StatusMacrosTest, AssignOrReturnPassesTheValueThrough) {
  EXPECT_THAT(Quarter(8), IsOk());
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(*Unbox(5), 5);
}

TEST(StatusMacrosTest, AssignOrReturnReturnsTheFirstError) {
  EXPECT_THAT(Quarter(6), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("3 is odd")));
  EXPECT_THAT(Quarter(7), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("7 is odd")));
}

TEST(StatusMacrosTest, ReturnIfErrorStopsAtTheFirstError) {
  int calls = 0;
  EXPECT_THAT(BothEven(2, 4, &calls), IsOk());
  EXPECT_EQ(calls, 3);
  calls = 0;
  EXPECT_THAT(BothEven(2, 5, &calls), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(calls, 2);
  calls = 0;
  EXPECT_THAT(BothEven(1, 4, &calls), Not(IsOk()));
  EXPECT_EQ(calls, 1);
}

TEST(StatusMatchersTest, StatusIsChecksCodeAndMessage) {
  const absl::Status status = absl::NotFoundError("no planner named x");
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kNotFound, HasSubstr("planner")));
  EXPECT_THAT(status, Not(StatusIs(absl::StatusCode::kInvalidArgument)));
  EXPECT_THAT(status, Not(StatusIs(absl::StatusCode::kNotFound, HasSubstr("stage"))));
  EXPECT_THAT(absl::OkStatus(), Not(StatusIs(absl::StatusCode::kNotFound)));
}

}  // namespace
}  // namespace stagehand
