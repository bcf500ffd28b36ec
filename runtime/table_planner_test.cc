// Tests of the "csv" planner: torch-written schedules load, validate and simulate; options
// must match the table; bad tables and files are rejected before anything runs.
// Not tests of CSV syntax (schedule_table_test.cc) or of ValidatePlan's messages.
#include "runtime/table_planner.h"

#include <cstdlib>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/simulator.h"

namespace stagehand::runtime {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string RunfilePath(const std::string& name) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  return std::string(srcdir == nullptr ? "." : srcdir) + "/stagehand/tests/golden/" + name;
}

std::string WriteTemp(const std::string& name, const std::string& text) {
  const std::string path = std::string(std::getenv("TEST_TMPDIR")) + "/" + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

TEST(TablePlannerTest, RunsATorchDualPipeVSchedule) {
  absl::StatusOr<std::unique_ptr<PlannerDefinition>> definition =
      LoadSchedulePlanner(RunfilePath("torch_dualpipev_p2_m4.csv"));
  ASSERT_TRUE(definition.ok()) << definition.status();
  EXPECT_EQ((*definition)->name(), "csv");
  EXPECT_THAT((*definition)->description(),
              HasSubstr("2 ranks, 4 microbatches, 4 chunks, split backward"));
  absl::StatusOr<SimResult> result = Simulate(**definition, {2, 4});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->step_time, 6 * 4 + 1);  // DualPipeV's floor: 6M + P - 1
  // Its overlapped pairs run back to back: rank 0 step 7 is (0F3;3B1)OVERLAP_F_B.
  EXPECT_EQ(ActionToString(result->per_stage[0][7].action), "s0 F c0 mb3");
  EXPECT_EQ(ActionToString(result->per_stage[0][8].action), "s0 I c3 mb1");
  EXPECT_EQ(ActionToString(result->per_stage[0][9].action), "s0 W c3 mb1");
}

TEST(TablePlannerTest, RunsATorchInterleavedScheduleWithIdleSteps) {
  absl::StatusOr<std::unique_ptr<PlannerDefinition>> definition =
      LoadSchedulePlanner(RunfilePath("torch_interleaved_p2_m4.csv"));
  ASSERT_TRUE(definition.ok()) << definition.status();
  absl::StatusOr<SimResult> result = Simulate(**definition, {2, 4});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_DOUBLE_EQ(result->bubble_fraction, 1.0 / 9);  // (P-1)/(v*M+P-1)
}

TEST(TablePlannerTest, OptionsMustMatchTheTable) {
  absl::StatusOr<std::unique_ptr<PlannerDefinition>> definition =
      LoadSchedulePlanner(RunfilePath("torch_interleaved_p2_m4.csv"));
  ASSERT_TRUE(definition.ok()) << definition.status();
  EXPECT_THAT((*definition)->MakeSpec({4, 4}).status().message(),
              HasSubstr("has 2 ranks (rows), but num_stages = 4; run it with num_stages = 2"));
  EXPECT_THAT((*definition)->MakeSpec({2, 8}).status().message(),
              HasSubstr("runs 4 microbatches, but num_microbatches = 8"));
  const absl::Status capped = (*definition)->MakeSpec({2, 4, 2}).status();
  EXPECT_EQ(capped.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(capped.message(), HasSubstr("above max_inflight = 2"));
  EXPECT_TRUE((*definition)->MakeSpec({2, 4, 5}).ok());
}

TEST(TablePlannerTest, ABadTableIsRejectedBeforeItRuns) {
  const std::string path = WriteTemp("cyclic.csv", "0F0,0B0,0F1,0B1\r\n1F1,1F0,1B0,1B1\r\n");
  const absl::Status status = LoadSchedulePlanner(path).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), StartsWith(path + ": rank 0, step 1, action 0B0"));
  EXPECT_THAT(status.message(), HasSubstr("deadlock"));
}

TEST(TablePlannerTest, AFileWithABadCellIsRejectedWithItsPlace) {
  const std::string path = WriteTemp("bad_cell.csv", "0F0,0F1,0B0,0B1\r\n1F0,1B0,1F 1,1B1\r\n");
  const absl::Status status = LoadSchedulePlanner(path).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()),
              StartsWith(path + ": rank 1 (line 2), step 2 (column 3): bad cell \"1F 1\""));
  EXPECT_THAT(status.message(), HasSubstr("[1F 1]  <-- rank 1, step 2"));
}

TEST(TablePlannerTest, APlacementErrorShowsTheGrid) {
  const absl::Status status =
      MakeTablePlanner(*ParseScheduleCsv("0F0,0B0\r\n1F0,0B0\r\n"), "t").status();
  EXPECT_THAT(std::string(status.message()),
              StartsWith("t: chunk 0 appears on rank 0 (step 0) and on rank 1"));
  EXPECT_THAT(status.message(), HasSubstr("Step 1: 0B0    0B0"));
}

}  // namespace
}  // namespace stagehand::runtime
