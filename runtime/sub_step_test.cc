// Tests of SubStep: text form, round trip, errors, and the dependency order of a chunk's split
// F / I / W; SubStepGraph's chains on two lanes. Not tests of a planner.
#include "runtime/sub_step.h"

#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/sub_step_graph.h"

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

TEST(SubStepGraphTest, AnActionsSubStepsFollowOneAnotherOnTheirLanes) {
  absl::StatusOr<SubStepGraph> graph = SubStepGraph::Create({{0, ChunkLayers{4, {true}}}});
  ASSERT_TRUE(graph.ok()) << graph.status();
  const Action f{0, ActionKind::kForward, 0, 1};
  ASSERT_TRUE(graph->Start(f).ok());
  EXPECT_EQ(graph->Start(f).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(graph->Ready(SubStepLane::kCommunication).empty());
  std::vector<SubStepOrder> ready = graph->Ready(SubStepLane::kCompute);
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(SubStepOrderToString(ready[0]), "s0 F c0 mb1 L4 attn (1/5)");
  ASSERT_TRUE(graph->Launched(ready[0]).ok());
  EXPECT_TRUE(graph->LaneBusy(SubStepLane::kCompute));
  EXPECT_TRUE(graph->Ready(SubStepLane::kCommunication).empty());  // attn still runs
  ASSERT_TRUE(*graph->Finished(ready[0]) == false);
  ready = graph->Ready(SubStepLane::kCommunication);
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(SubStepOrderToString(ready[0]), "s0 F c0 mb1 L4 dispatch (2/5)");
  EXPECT_EQ(graph->Finished(ready[0]).status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(graph->Launched(ready[0]).ok());
  EXPECT_EQ(graph->Launched(ready[0]).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(graph->Describe(), HasSubstr("dispatch (2/5) on the communication lane"));
}

TEST(SubStepGraphTest, TwoActionsShareTheLanesAndDenseOnesRunWhole) {
  absl::StatusOr<SubStepGraph> graph =
      SubStepGraph::Create({{0, ChunkLayers{0, {true}}}, {1, ChunkLayers{1, {false}}}});
  ASSERT_TRUE(graph.ok());
  const Action f{0, ActionKind::kForward, 0, 1}, b{0, ActionKind::kBackward, 0, 0};
  ASSERT_TRUE(graph->Start(f).ok());
  SubStepOrder attn = graph->Ready(SubStepLane::kCompute)[0];
  ASSERT_TRUE(graph->Launched(attn).ok());
  ASSERT_TRUE(graph->Finished(attn).ok());
  SubStepOrder dispatch = graph->Ready(SubStepLane::kCommunication)[0];
  ASSERT_TRUE(graph->Launched(dispatch).ok());
  ASSERT_TRUE(graph->Start(b).ok());  // B's rest computes while F's dispatch communicates
  std::vector<SubStepOrder> ready = graph->Ready(SubStepLane::kCompute);
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(SubStepOrderToString(ready[0]), "s0 B c0 mb0 L0 rest (1/5)");
  EXPECT_EQ(graph->Running().size(), 2u);
  const Action dense{0, ActionKind::kForward, 1, 0};
  ASSERT_TRUE(graph->Start(dense).ok());
  EXPECT_EQ(SubStepOrderToString(graph->Ready(SubStepLane::kCompute)[1]), "s0 F c1 mb0 (whole)");
  EXPECT_EQ(graph->Start({0, ActionKind::kForward, 2, 0}).code(),
            absl::StatusCode::kInvalidArgument);  // chunk 2 not in the layout
  EXPECT_EQ(SubStepGraph::Create({{0, ChunkLayers{0, {}}}}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace stagehand::runtime
