// Tests of the planner registry and OrderedPlanner.
// Not tests of any particular schedule (runtime/planners/*_test.cc).
#include "runtime/planner.h"

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stagehand::runtime {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsSupersetOf;

class FakeDefinition : public PlannerDefinition {
 public:
  FakeDefinition(std::string name, std::string description)
      : name_(std::move(name)), description_(std::move(description)) {}
  std::string name() const override { return name_; }
  std::string description() const override { return description_; }
  absl::StatusOr<StepSpec> MakeSpec(const PlannerOptions&) const override {
    return absl::UnimplementedError("fake");
  }
  std::unique_ptr<Planner> MakePlanner(const StepSpec&, int) const override { return nullptr; }

 private:
  std::string name_;
  std::string description_;
};

TEST(PlannerRegistryTest, GetOfAnUnknownNameListsTheKnownNames) {
  PlannerRegistry registry;
  registry.Register(std::make_unique<FakeDefinition>("zeta", "z"));
  registry.Register(std::make_unique<FakeDefinition>("alpha", "a"));
  const absl::StatusOr<const PlannerDefinition*> got = registry.Get("beta");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(got.status().message(),
              HasSubstr("no planner named \"beta\"; known planners: alpha, zeta"));
  EXPECT_EQ(registry.Find("beta"), nullptr);
}

TEST(PlannerRegistryTest, FindsRegisteredDefinitionsByName) {
  PlannerRegistry registry;
  registry.Register(std::make_unique<FakeDefinition>("alpha", "a"));
  ASSERT_NE(registry.Find("alpha"), nullptr);
  EXPECT_EQ(registry.Find("alpha")->description(), "a");
  const absl::StatusOr<const PlannerDefinition*> got = registry.Get("alpha");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, registry.Find("alpha"));
  EXPECT_THAT(registry.Names(), ElementsAre("alpha"));
}

TEST(PlannerRegistryTest, EmptyRegistrySaysWhatToLink) {
  PlannerRegistry registry;
  EXPECT_THAT(registry.Get("1f1b").status().message(),
              HasSubstr("link //runtime/planners:all_planners"));
}

TEST(PlannerRegistryTest, DuplicateNameKeepsTheFirstAndGetReportsIt) {
  PlannerRegistry registry;
  registry.Register(std::make_unique<FakeDefinition>("alpha", "first"));
  registry.Register(std::make_unique<FakeDefinition>("alpha", "second"));
  EXPECT_EQ(registry.Find("alpha")->description(), "first");
  const absl::StatusOr<const PlannerDefinition*> got = registry.Get("alpha");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(got.status().message(), HasSubstr("\"alpha\" is registered 2 times"));
}

TEST(PlannerRegistryTest, BuiltInPlannersAreRegisteredByLinking) {
  EXPECT_THAT(PlannerRegistry::Default().Names(), IsSupersetOf({"1f1b", "gpipe"}));
  EXPECT_TRUE(PlannerRegistry::Default().Get("gpipe").ok());
  EXPECT_TRUE(PlannerRegistry::Default().Get("1f1b").ok());
  EXPECT_THAT(
      PlannerRegistry::Default().Get("nope").status().message(),
      HasSubstr("known planners: 1f1b, 1f1b_overlap, adaptive, dualpipe_v, gpipe, interleaved, "
                "looped_bfs, zb_h1, zb_h2, zb_v"));
}

TEST(PlannerOptionsTest, ValidationNamesTheBadField) {
  EXPECT_THAT(ValidatePlannerOptions({0, 8, 0}).message(),
              HasSubstr("PlannerOptions.num_stages = 0"));
  EXPECT_THAT(ValidatePlannerOptions({4, 0, 0}).message(),
              HasSubstr("PlannerOptions.num_microbatches = 0"));
  EXPECT_THAT(ValidatePlannerOptions({4, 8, -1}).message(),
              HasSubstr("PlannerOptions.max_inflight = -1"));
  EXPECT_TRUE(ValidatePlannerOptions({4, 8, 0}).ok());
}

TEST(OrderedPlannerTest, ReturnsTheHeadOnlyWhenItIsReady) {
  StepSpec spec;
  spec.num_stages = 1;
  spec.num_microbatches = 2;
  spec.num_chunks = 1;
  spec.chunk_to_stage = {0};
  const Action f0{0, ActionKind::kForward, 0, 0};
  const Action f1{0, ActionKind::kForward, 0, 1};
  const Action bw0{0, ActionKind::kBackward, 0, 0};
  const Action bw1{0, ActionKind::kBackward, 0, 1};
  OrderedPlanner planner({f1, f0, bw0, bw1});
  StageState state(spec, 0);
  EXPECT_EQ(planner.Next(state.Ready(), state), f1);
  EXPECT_EQ(planner.Next(state.Ready(), state), f1);  // nothing started: same answer
  ASSERT_TRUE(state.Started(f1).ok());
  ASSERT_TRUE(state.Finished(f1).ok());
  EXPECT_EQ(planner.Next(state.Ready(), state), f0);
  EXPECT_EQ(planner.Next({}, state), std::nullopt);  // head not in `ready`: wait
  ASSERT_TRUE(state.Started(f0).ok());
  ASSERT_TRUE(state.Finished(f0).ok());
  // B c0 mb1 is ready too, but the list says B c0 mb0 first.
  EXPECT_EQ(planner.Next({bw1}, state), std::nullopt);
  EXPECT_EQ(planner.Next(state.Ready(), state), bw0);
}

}  // namespace
}  // namespace stagehand::runtime
