// Tests of Action: text form, parse round-trip, errors, ordering and hashing.
// Not tests of the step graph (stage_state_test.cc).
#include "runtime/action.h"

#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "gtest/gtest.h"

namespace stagehand::runtime {
namespace {

TEST(ActionTest, PrintsTheDocumentedTextForms) {
  EXPECT_EQ(ActionToString({1, ActionKind::kForward, 0, 3}), "s1 F c0 mb3");
  EXPECT_EQ(ActionToString({1, ActionKind::kBackwardInput, 0, 3}), "s1 I c0 mb3");
  EXPECT_EQ(ActionToString({1, ActionKind::kBackwardWeight, 0, 3}), "s1 W c0 mb3");
  EXPECT_EQ(ActionToString({1, ActionKind::kBackward, 0, 3}), "s1 B c0 mb3");
  EXPECT_EQ(ActionToString({2, ActionKind::kSendForward, 1, 0}), "s2 SEND_F c1 mb0");
  EXPECT_EQ(ActionToString({2, ActionKind::kRecvForward, 1, 0}), "s2 RECV_F c1 mb0");
  EXPECT_EQ(ActionToString({2, ActionKind::kSendBackward, 1, 0}), "s2 SEND_B c1 mb0");
  EXPECT_EQ(ActionToString({2, ActionKind::kRecvBackward, 1, 0}), "s2 RECV_B c1 mb0");
  EXPECT_EQ(ActionToString({0, ActionKind::kReduceGrad, 0, 0}), "s0 REDUCE_GRAD");
  EXPECT_EQ(ActionToString({0, ActionKind::kOptimizer, 0, 0}), "s0 OPTIM");
  EXPECT_EQ(ActionToStringWithoutStage({5, ActionKind::kBackward, 2, 7}), "B c2 mb7");
}

TEST(ActionTest, EveryKindRoundTrips) {
  const ActionKind kinds[] = {ActionKind::kForward,        ActionKind::kBackwardInput,
                              ActionKind::kBackwardWeight, ActionKind::kBackward,
                              ActionKind::kSendForward,    ActionKind::kRecvForward,
                              ActionKind::kSendBackward,   ActionKind::kRecvBackward,
                              ActionKind::kReduceGrad,     ActionKind::kOptimizer};
  for (ActionKind kind : kinds) {
    const Action action = IsPerStage(kind) ? Action{12, kind, 0, 0} : Action{12, kind, 3, 41};
    const std::string text = ActionToString(action);
    absl::StatusOr<Action> parsed = ParseAction(text);
    ASSERT_TRUE(parsed.ok()) << text << ": " << parsed.status();
    EXPECT_EQ(*parsed, action) << text;
    absl::StatusOr<ActionKind> kind_back = ParseActionKind(ActionKindName(kind));
    ASSERT_TRUE(kind_back.ok());
    EXPECT_EQ(*kind_back, kind);
  }
}

TEST(ActionTest, ParseToleratesExtraWhitespace) {
  absl::StatusOr<Action> parsed = ParseAction("  s1\tF  c0 mb3 ");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, (Action{1, ActionKind::kForward, 0, 3}));
}

void ExpectBad(const std::string& text, const std::string& fragment) {
  absl::StatusOr<Action> parsed = ParseAction(text);
  ASSERT_FALSE(parsed.ok()) << text;
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << text;
  EXPECT_NE(std::string(parsed.status().message()).find(fragment), std::string::npos)
      << "for \"" << text << "\": " << parsed.status().message();
}

TEST(ActionTest, BadTextSaysWhatIsWrong) {
  ExpectBad("", "expected \"s<stage> <KIND>");
  ExpectBad("s1", "expected \"s<stage> <KIND>");
  ExpectBad("x1 F c0 mb3", "expected the stage as \"s<n>\" with n >= 0, got \"x1\"");
  ExpectBad("s-1 F c0 mb3", "got \"s-1\"");
  ExpectBad("s1 X c0 mb3", "unknown action kind \"X\" (known: F, I, W, B, SEND_F");
  ExpectBad("s1 f c0 mb3", "unknown action kind \"f\"");
  ExpectBad("s1 F mb3 c0", "expected the chunk as \"c<n>\" with n >= 0, got \"mb3\"");
  ExpectBad("s1 F c0 mbx", "expected the microbatch as \"mb<n>\" with n >= 0, got \"mbx\"");
  ExpectBad("s1 F c0", "F expects exactly \"c<chunk> mb<microbatch>\" after it, got 1");
  ExpectBad("s1 F c0 mb3 mb4", "got 3 token(s)");
  ExpectBad("s0 OPTIM c0", "OPTIM takes no chunk or microbatch, got extra \"c0\"");
  ExpectBad("s1 F c99999999999 mb0", "got \"c99999999999\"");
}

TEST(ActionTest, IsComputeHoldsForExactlyFIWAndB) {
  EXPECT_TRUE(IsCompute(ActionKind::kForward));
  EXPECT_TRUE(IsCompute(ActionKind::kBackwardInput));
  EXPECT_TRUE(IsCompute(ActionKind::kBackwardWeight));
  EXPECT_TRUE(IsCompute(ActionKind::kBackward));
  EXPECT_FALSE(IsCompute(ActionKind::kSendForward));
  EXPECT_FALSE(IsCompute(ActionKind::kRecvBackward));
  EXPECT_FALSE(IsCompute(ActionKind::kReduceGrad));
  EXPECT_FALSE(IsCompute(ActionKind::kOptimizer));
}

TEST(ActionTest, OrdersByStageThenKindThenChunkThenMicrobatch) {
  EXPECT_LT((Action{0, ActionKind::kBackward, 0, 0}), (Action{1, ActionKind::kForward, 0, 0}));
  EXPECT_LT((Action{1, ActionKind::kForward, 3, 9}), (Action{1, ActionKind::kBackward, 0, 0}));
  EXPECT_LT((Action{1, ActionKind::kForward, 0, 9}), (Action{1, ActionKind::kForward, 1, 0}));
  EXPECT_LT((Action{1, ActionKind::kForward, 1, 0}), (Action{1, ActionKind::kForward, 1, 1}));
  EXPECT_FALSE((Action{1, ActionKind::kForward, 1, 1}) < (Action{1, ActionKind::kForward, 1, 1}));
}

TEST(ActionTest, HashesAsAValue) {
  absl::flat_hash_set<Action> set;
  set.insert(Action{1, ActionKind::kForward, 0, 3});
  set.insert(Action{1, ActionKind::kForward, 0, 3});
  set.insert(Action{1, ActionKind::kBackward, 0, 3});
  EXPECT_EQ(set.size(), 2u);
  EXPECT_TRUE(set.contains(Action{1, ActionKind::kBackward, 0, 3}));
}

}  // namespace
}  // namespace stagehand::runtime
