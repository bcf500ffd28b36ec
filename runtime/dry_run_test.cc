// Tests of the dry run: every built-in planner's plan as a torch-format CSV golden; a dumped
// plan loads back as the same plan; the report's format; errors come before any report.
// Not tests of the planners' shapes (runtime/planners/*_test.cc).
#include "runtime/dry_run.h"

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/table_planner.h"
#include "tests/golden/golden.h"

namespace stagehand::runtime {
namespace {

using ::testing::HasSubstr;

const PlannerDefinition& Get(const std::string& name) {
  absl::StatusOr<const PlannerDefinition*> definition = PlannerRegistry::Default().Get(name);
  EXPECT_TRUE(definition.ok()) << definition.status();
  return **definition;
}

TEST(DryRunTest, EveryPlannersPlanMatchesItsCsvGolden) {
  for (const std::string& name : PlannerRegistry::Default().Names()) {
    absl::StatusOr<ScheduleTable> table = ValidatePlanner(Get(name), {4, 8});
    ASSERT_TRUE(table.ok()) << table.status();
    stagehand::testing::ExpectMatchesGolden(name + "_p4_m8.csv", FormatScheduleCsv(*table));
  }
}

TEST(DryRunTest, ADumpedPlanLoadsBackAsTheSamePlan) {
  for (const std::string& name : PlannerRegistry::Default().Names()) {
    absl::StatusOr<ScheduleTable> table = ValidatePlanner(Get(name), {4, 8});
    ASSERT_TRUE(table.ok()) << table.status();
    absl::StatusOr<ScheduleTable> parsed = ParseScheduleCsv(FormatScheduleCsv(*table));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    absl::StatusOr<std::unique_ptr<PlannerDefinition>> loaded =
        MakeTablePlanner(*std::move(parsed), name + ".csv");
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    absl::StatusOr<StepSpec> original_spec = Get(name).MakeSpec({4, 8});
    absl::StatusOr<StepSpec> loaded_spec = (*loaded)->MakeSpec({4, 8});
    ASSERT_TRUE(original_spec.ok() && loaded_spec.ok());
    EXPECT_EQ(loaded_spec->chunk_to_stage, original_spec->chunk_to_stage) << name;
    EXPECT_EQ(loaded_spec->split_backward, original_spec->split_backward) << name;
    EXPECT_EQ(PlannedOrders(**loaded, *loaded_spec).value(),
              PlannedOrders(Get(name), *original_spec).value())
        << name;
  }
}

TEST(DryRunTest, FormatsBubbleAndPeakMemoryPerStage) {
  absl::StatusOr<DryRunReport> report = DryRun(Get("zb_h1"), {4, 8});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_DOUBLE_EQ(report->bubble_fraction, 3.0 / 27);
  EXPECT_EQ(FormatDryRun(*report),
            "dry run: zb_h1, 4 stages, 8 microbatches, 4 chunks, split backward (I/W), "
            "max_inflight unlimited\n"
            "costs: F=1 I=1 W=1 B=2 transfer=0; optimizer synchronised at the end; step time 27 "
            "chunk units = 27 model units (1 = F of 1/P of the model, comparable across "
            "chunkings)\n"
            "stage  bubble  peak activations (microbatch-chunks)\n"
            "s0      11.1%  4\n"
            "s1      11.1%  4\n"
            "s2      11.1%  4\n"
            "s3      11.1%  4\n"
            "all     11.1%\n");
}

TEST(DryRunTest, ModelStepTimeIsComparableAcrossChunkings) {
  // zb_v's 8 chunks at P = 4 are half a stage each: 51 chunk units are 25.5 model units.
  absl::StatusOr<DryRunReport> zb_v = DryRun(Get("zb_v"), {4, 8});
  ASSERT_TRUE(zb_v.ok()) << zb_v.status();
  EXPECT_DOUBLE_EQ(zb_v->step_time, 51);
  EXPECT_DOUBLE_EQ(zb_v->model_step_time, 25.5);
  absl::StatusOr<DryRunReport> one_f_one_b = DryRun(Get("1f1b"), {4, 8});
  ASSERT_TRUE(one_f_one_b.ok()) << one_f_one_b.status();
  EXPECT_DOUBLE_EQ(one_f_one_b->model_step_time, 33);
}

TEST(DryRunTest, UsesTheGivenCostModel) {
  CostModel cost;
  cost.transfer = 0.5;
  absl::StatusOr<DryRunReport> report = DryRun(Get("1f1b"), {4, 8}, cost);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_GT(report->step_time, 33);
  EXPECT_THAT(FormatDryRun(*report), HasSubstr("transfer=0.5"));
}

TEST(DryRunTest, APlannerThatCannotPlanFailsBeforeAnyReport) {
  const absl::Status status = DryRun(Get("dualpipe_v"), {4, 4}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(),
              HasSubstr("dualpipe_v: dualpipe_v needs num_microbatches >= 2 * num_stages = 8"));
}

}  // namespace
}  // namespace stagehand::runtime
