// Tests of SubStep: text form, round trip, errors, and the dependency order of a chunk's split
// F / I / W. Not tests of a planner (none runs sub-steps yet).
#include "runtime/sub_step.h"

#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stagehand::runtime {
namespace {

using ::testing::HasSubstr;

TEST(SubStepTest, PrintsTheDocumentedTextForm) {
  EXPECT_EQ(SubStepToString({{1, ActionKind::kForward, 0, 3}, 2, SubStepKind::kDispatch}),
            "s1 F c0 mb3 L2 dispatch");
  EXPECT_EQ(SubStepToString({{0, ActionKind::kBackwardWeight, 1, 0}, 7, SubStepKind::kExperts}),
            "s0 W c1 mb0 L7 experts");
}

TEST(SubStepTest, EveryComputeKindAndPartRoundTrips) {
  absl::flat_hash_set<SubStep> seen;
  for (ActionKind kind : {ActionKind::kForward, ActionKind::kBackwardInput,
                          ActionKind::kBackwardWeight, ActionKind::kBackward}) {
    for (SubStepKind part : {SubStepKind::kAttention, SubStepKind::kDispatch, SubStepKind::kExperts,
                             SubStepKind::kCombine, SubStepKind::kRest}) {
      const SubStep step{{3, kind, 2, 11}, 13, part};
      absl::StatusOr<SubStep> back = ParseSubStep(SubStepToString(step));
      ASSERT_TRUE(back.ok()) << back.status();
      EXPECT_EQ(*back, step) << SubStepToString(step);
      EXPECT_TRUE(seen.insert(step).second);
    }
  }
  EXPECT_EQ(seen.size(), 20u);
  absl::StatusOr<SubStep> tabs = ParseSubStep("s0\tI  c1 mb2\tL0 combine");
  ASSERT_TRUE(tabs.ok()) << tabs.status();
  EXPECT_EQ(tabs->part, SubStepKind::kCombine);
}

TEST(SubStepTest, OnlyDispatchAndCombineCommunicate) {
  EXPECT_TRUE(IsCommunication(SubStepKind::kDispatch));
  EXPECT_TRUE(IsCommunication(SubStepKind::kCombine));
  EXPECT_FALSE(IsCommunication(SubStepKind::kAttention));
  EXPECT_FALSE(IsCommunication(SubStepKind::kExperts));
  EXPECT_FALSE(IsCommunication(SubStepKind::kRest));
}

TEST(SubStepTest, ErrorsNameTheBadToken) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"s0 F c0 mb0", "expected the layer as \"L<n>\""},
      {"s0 F c0 mb0 2 attn", "got \"2\""},
      {"s0 F c0 mb0 L2 router",
       "unknown sub-step \"router\" (known: attn, dispatch, experts, "
       "combine, rest)"},
      {"s0 SEND_F c0 mb0 L1 dispatch", "only F, I, W and B split into sub-steps, not SEND_F"},
      {"s0 F c0 L1 attn", "F expects exactly \"c<chunk> mb<microbatch>\""},
      {"L1 attn", "expected \"s<stage> <F|I|W|B>"},
  };
  for (const auto& [text, message] : cases) {
    EXPECT_THAT(std::string(ParseSubStep(text).status().message()), HasSubstr(message)) << text;
  }
}

std::vector<std::string> Texts(const Action& action, int first, const std::vector<bool>& moe) {
  absl::StatusOr<std::vector<SubStep>> steps = SplitIntoSubSteps(action, first, moe);
  EXPECT_TRUE(steps.ok()) << steps.status();
  std::vector<std::string> out;
  for (const SubStep& s : *steps) out.push_back(SubStepToString(s));
  return out;
}

TEST(SubStepTest, OnlyMoeLayersSplitInDependencyOrder) {
  const std::vector<bool> layers = {false, true};  // layers 4 (dense) and 5 (MoE)
  EXPECT_THAT(Texts({1, ActionKind::kForward, 0, 2}, 4, layers),
              ::testing::ElementsAre("s1 F c0 mb2 L4 rest", "s1 F c0 mb2 L5 attn",
                                     "s1 F c0 mb2 L5 dispatch", "s1 F c0 mb2 L5 experts",
                                     "s1 F c0 mb2 L5 combine", "s1 F c0 mb2 L5 rest"));
  EXPECT_THAT(Texts({1, ActionKind::kBackwardInput, 0, 2}, 4, layers),
              ::testing::ElementsAre("s1 I c0 mb2 L5 rest", "s1 I c0 mb2 L5 combine",
                                     "s1 I c0 mb2 L5 experts", "s1 I c0 mb2 L5 dispatch",
                                     "s1 I c0 mb2 L5 attn", "s1 I c0 mb2 L4 rest"));
  EXPECT_THAT(Texts({1, ActionKind::kBackwardWeight, 0, 2}, 4, layers),
              ::testing::ElementsAre("s1 W c0 mb2 L5 rest", "s1 W c0 mb2 L5 experts",
                                     "s1 W c0 mb2 L5 attn", "s1 W c0 mb2 L4 rest"));
  EXPECT_THAT(Texts({0, ActionKind::kForward, 1, 0}, 0, {false, false}),
              ::testing::ElementsAre("s0 F c1 mb0 L0 rest", "s0 F c1 mb0 L1 rest"));
  EXPECT_THAT(SplitIntoSubSteps({0, ActionKind::kSendForward, 1, 0}, 0, layers).status().message(),
              HasSubstr("only F, I, W and B split into sub-steps, not s0 SEND_F c1 mb0"));
}

}  // namespace
}  // namespace stagehand::runtime
