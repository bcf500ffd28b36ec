// Tests of the flag-combination checks: a flag that would be silently ignored is an error
// that names it. Not tests of flag parsing (tests/launch_test.sh runs the binary).
#include "tools/train_flags.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/planner.h"

namespace stagehand::tools {
namespace {

using ::testing::HasSubstr;

const runtime::PlannerRegistry& Planners() { return runtime::PlannerRegistry::Default(); }

TEST(ValidateScheduleFlagsTest, PlannerWithScheduleIsAnError) {
  const absl::Status s = ValidateScheduleFlags({"zb_h1", "plan.csv", {4, 8}}, Planners());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("--planner=zb_h1 and --schedule=plan.csv both choose the "
                                     "plan, and the file would win silently"));
}

TEST(ValidateScheduleFlagsTest, ChunksPerStageWithScheduleIsAnError) {
  EXPECT_THAT(ValidateScheduleFlags({"", "plan.csv", {4, 8, 0, 2}}, Planners()).message(),
              HasSubstr("--chunks_per_stage=2 is ignored with --schedule"));
}

TEST(ValidateScheduleFlagsTest, ChunksPerStageWithAFixedShapePlannerIsAnError) {
  EXPECT_THAT(ValidateScheduleFlags({"1f1b", "", {4, 8, 0, 2}}, Planners()).message(),
              HasSubstr("--chunks_per_stage=2 is ignored by planner 1f1b, which places 4 chunks "
                        "on 4 stages"));
  // The default planner is 1f1b too.
  EXPECT_THAT(ValidateScheduleFlags({"", "", {4, 8, 0, 3}}, Planners()).message(),
              HasSubstr("ignored by planner 1f1b"));
  EXPECT_THAT(ValidateScheduleFlags({"zb_v", "", {4, 8, 0, 3}}, Planners()).message(),
              HasSubstr("ignored by planner zb_v, which places 8 chunks on 4 stages"));
}

TEST(ValidateScheduleFlagsTest, HonouredCombinationsPass) {
  EXPECT_TRUE(ValidateScheduleFlags({"interleaved", "", {4, 8, 0, 3}}, Planners()).ok());
  EXPECT_TRUE(ValidateScheduleFlags({"looped_bfs", "", {4, 8, 0, 2}}, Planners()).ok());
  EXPECT_TRUE(ValidateScheduleFlags({"1f1b", "", {4, 8, 0, 1}}, Planners()).ok());  // v = 1
  EXPECT_TRUE(ValidateScheduleFlags({"", "plan.csv", {4, 8}}, Planners()).ok());
  EXPECT_TRUE(ValidateScheduleFlags({"zb_h1", "", {4, 8}}, Planners()).ok());
  // An unknown name is left to the registry lookup, which lists the known ones.
  EXPECT_TRUE(ValidateScheduleFlags({"no_such", "", {4, 8, 0, 2}}, Planners()).ok());
}

TEST(ValidateDryRunFlagsTest, AnOutputWithDryRunIsAnError) {
  EXPECT_THAT(ValidateDryRunFlags(true, {{"--save_params", ""}, {"--trace", "t.json"}}).message(),
              HasSubstr("--dry_run trains nothing, so --trace=t.json would be ignored"));
  EXPECT_TRUE(ValidateDryRunFlags(true, {{"--trace", ""}}).ok());
  EXPECT_TRUE(ValidateDryRunFlags(false, {{"--trace", "t.json"}}).ok());
}

}  // namespace
}  // namespace stagehand::tools
