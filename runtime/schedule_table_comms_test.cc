// Tests of LowerToComputeComms: a two-rank plan lowered exactly as torch's algorithm does by
// hand, and the interleaved 1F1B golden (8 ranks, 16 microbatches) that --schedule must read.
// Not tests of the SEND/RECV check itself (plan_validation_test.cc).
#include "runtime/schedule_table_comms.h"

#include <string>

#include "gtest/gtest.h"
#include "runtime/dry_run.h"
#include "runtime/plan_validation.h"
#include "runtime/planner.h"
#include "tests/golden/golden.h"

namespace stagehand::runtime {
namespace {

constexpr char kGolden[] = "torch_comms_interleaved_p8_m16.csv";

TEST(LowerToComputeCommsTest, LowersATwoRankPlanAsTorchDoes) {
  absl::StatusOr<ScheduleTable> plan =
      ParseScheduleCsv("0F0,0F1,,0B0,,0B1\r\n,1F0,1B0,1F1,1B1\r\n");
  ASSERT_TRUE(plan.ok()) << plan.status();
  absl::StatusOr<ScheduleTable> lowered = LowerToComputeComms(*plan);
  ASSERT_TRUE(lowered.ok()) << lowered.status();
  // Worked by hand through torch's passes: ranks take turns; rank 1's RECV_F1 lands when
  // rank 0 runs 0F1, before rank 1's 1B0.
  EXPECT_EQ(FormatScheduleCsv(*lowered),
            "0UNSHARD,0F0,0SEND_F0,0F1,0SEND_F1,0RECV_B0,0B0,0RECV_B1,0B1,0REDUCE_GRAD,0RESHARD\r\n"
            "1UNSHARD,1RECV_F0,1F0,1RECV_F1,1B0,1SEND_B0,1F1,1B1,1SEND_B1,1REDUCE_GRAD,1RESHARD"
            "\r\n");
}

TEST(LowerToComputeCommsTest, AStalledPlanCannotBeLowered) {
  absl::StatusOr<ScheduleTable> plan = ParseScheduleCsv("0F0,0B0,0F1,0B1\r\n1F1,1F0,1B0,1B1\r\n");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(LowerToComputeComms(*plan).status().code(), absl::StatusCode::kInvalidArgument);
}

// The golden: interleaved 1F1B (v = 2) for 8 ranks and 16 microbatches, as torchtitan would
// dump it after lowering. STAGEHAND_UPDATE_GOLDEN=$PWD/tests/golden rewrites it.
TEST(LowerToComputeCommsTest, InterleavedP8M16MatchesTheGolden) {
  absl::StatusOr<const PlannerDefinition*> interleaved =
      PlannerRegistry::Default().Get("interleaved");
  ASSERT_TRUE(interleaved.ok()) << interleaved.status();
  absl::StatusOr<ScheduleTable> plan = ValidatePlanner(**interleaved, {8, 16});
  ASSERT_TRUE(plan.ok()) << plan.status();
  absl::StatusOr<ScheduleTable> lowered = LowerToComputeComms(*plan);
  ASSERT_TRUE(lowered.ok()) << lowered.status();
  stagehand::testing::ExpectMatchesGolden(kGolden, FormatScheduleCsv(*lowered));
}

TEST(LowerToComputeCommsTest, TheGoldenReadsBackAsTheSamePlanAndValidates) {
  absl::StatusOr<ScheduleTable> golden =
      ParseScheduleCsv(stagehand::testing::ReadGolden(kGolden), kGolden);
  ASSERT_TRUE(golden.ok()) << golden.status();
  EXPECT_EQ(FormatScheduleCsv(*golden), stagehand::testing::ReadGolden(kGolden));
  absl::StatusOr<StepSpec> spec = SpecFromTable(*golden);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_TRUE(ValidatePlan(*spec, *golden).ok()) << ValidatePlan(*spec, *golden);
  absl::StatusOr<const PlannerDefinition*> interleaved =
      PlannerRegistry::Default().Get("interleaved");
  ASSERT_TRUE(interleaved.ok());
  absl::StatusOr<ScheduleTable> plan = ValidatePlanner(**interleaved, {8, 16});
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(OrdersFromTable(*golden, *spec), OrdersFromTable(*plan, *spec));
}

}  // namespace
}  // namespace stagehand::runtime
