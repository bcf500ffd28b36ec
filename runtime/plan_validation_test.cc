// Tests of ValidatePlan: good plans pass; each kind of bad plan (missing action, backward
// before its forward, cyclic wait, memory, misplaced or duplicate action) is rejected with a
// message that names rank, step and action and shows the marked grid.
// Not tests of CSV parsing (schedule_table_test.cc).
#include "runtime/plan_validation.h"

#include <optional>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stagehand::runtime {
namespace {

using ::testing::HasSubstr;

ScheduleTable Parse(const std::string& text) {
  absl::StatusOr<ScheduleTable> table = ParseScheduleCsv(text);
  EXPECT_TRUE(table.ok()) << table.status();
  return table.ok() ? *table : ScheduleTable();
}

// Two stages, one chunk each, two microbatches.
StepSpec TwoStages(bool split, int max_inflight = 0) {
  StepSpec spec;
  spec.num_stages = 2;
  spec.num_microbatches = 2;
  spec.num_chunks = 2;
  spec.chunk_to_stage = {0, 1};
  spec.split_backward = split;
  spec.max_inflight = max_inflight;
  return spec;
}

TEST(ValidatePlanTest, AcceptsA1F1BTable) {
  EXPECT_TRUE(
      ValidatePlan(TwoStages(false), Parse("0F0,0F1,,0B0,,0B1\r\n,1F0,1B0,1F1,1B1\r\n")).ok());
}

TEST(ValidatePlanTest, AcceptsAZeroBubbleTableWithAFullBackward) {
  // Rank 1 fuses its last backward (torch's B) in an otherwise split table.
  EXPECT_TRUE(
      ValidatePlan(TwoStages(true), Parse("0F0,0F1,0I0,0W0,0I1,0W1\r\n1F0,1I0,1F1,1B1,1W0\r\n"))
          .ok());
}

TEST(ValidatePlanTest, AMissingWIsNamedWithWhereItBelongs) {
  const absl::Status status =
      ValidatePlan(TwoStages(true), Parse("0F0,0F1,0I0,0W0,0I1,0W1\r\n1F0,1I0,1W0,1F1,1I1\r\n"));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "rank 1, step 5, action 1W1 (s1 W c1 mb1): missing: rank 1 never runs it. Every "
            "(chunk, microbatch) of a rank needs F and then I and W (or one full B); add it "
            "after 1I1 (step 4); until it runs, the activations stay held\n"
            "        Rank 0 Rank 1\n"
            "Step 0: 0F0    1F0\n"
            "Step 1: 0F1    1I0\n"
            "Step 2: 0I0    1W0\n"
            "Step 3: 0W0    1F1\n"
            "Step 4: 0I1    1I1\n"
            "Step 5: 0W1    [missing 1W1]  <-- rank 1, step 5\n");
}

TEST(ValidatePlanTest, ABackwardBeforeItsForwardSaysWhatItWaitsFor) {
  const absl::Status status = ValidatePlan(
      TwoStages(true), Parse("0F0,0F1,0I0,0W0,0I1,0W1\r\n1I0,1F0,1W0,1F1,1I1,1W1\r\n"));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(),
              HasSubstr("rank 1, step 0, action 1I0 (s1 I c1 mb0): it runs before its forward "
                        "1F0 at step 1; a backward waits for the activations its forward saved: "
                        "move 1F0 before it\n"));
  EXPECT_THAT(status.message(), HasSubstr("Step 0: 0F0    [1I0]  <-- rank 1, step 0\n"));
}

TEST(ValidatePlanTest, AWBeforeItsInputGradientIsRejected) {
  EXPECT_THAT(
      ValidatePlan(TwoStages(true), Parse("0F0,0F1,0W0,0I0,0I1,0W1\r\n1F0,1I0,1W0,1F1,1I1,1W1\r\n"))
          .message(),
      HasSubstr("rank 0, step 2, action 0W0 (s0 W c0 mb0): it runs before its "
                "backward-input 0I0 at step 3"));
}

TEST(ValidatePlanTest, ACyclicWaitIsADeadlockNamingTheCycle) {
  // Rank 0 waits for 1B0's gradient; rank 1 runs 1F1 first, which waits for 0F1, which
  // rank 0 runs only after 0B0.
  const absl::Status status =
      ValidatePlan(TwoStages(false), Parse("0F0,0B0,0F1,0B1\r\n1F1,1F0,1B0,1B1\r\n"));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "rank 0, step 1, action 0B0 (s0 B c0 mb0): deadlock: the unit-step dry run stops "
            "with 7 actions left, because these ranks wait on each other in a cycle (rank 0 -> "
            "rank 1 -> rank 0):\n"
            "  rank 0, step 1: 0B0 waits for the gradient of 1B0 (rank 1, step 2), but rank 1 is "
            "stuck before it, at step 0 on 1F1\n"
            "  rank 1, step 0: 1F1 waits for the activation of 0F1 (rank 0, step 2), but rank 0 "
            "is stuck before it, at step 1 on 0B0\n"
            "A rank must run what another waits for before it waits itself: move 1F1 after "
            "1B0 in the row of rank 1 (checked: the plan then passes this whole validation).\n"
            "        Rank 0 Rank 1\n"
            "Step 0: 0F0    1F1\n"
            "Step 1: [0B0]  1F0  <-- rank 0, step 1\n"
            "Step 2: 0F1    1B0\n"
            "Step 3: 0B1    1B1\n");
}

TEST(ValidatePlanTest, TheSuggestedDeadlockFixPassesValidation) {
  // The fix printed above, applied: rank 1 runs 1F1 after 1B0.
  EXPECT_TRUE(ValidatePlan(TwoStages(false), Parse("0F0,0B0,0F1,0B1\r\n1F0,1B0,1F1,1B1\r\n")).ok());
  // Moving only the producer (what the old hint said) is not a fix: 1B0 before its forward.
  EXPECT_THAT(
      ValidatePlan(TwoStages(false), Parse("0F0,0B0,0F1,0B1\r\n1B0,1F1,1F0,1B1\r\n")).message(),
      HasSubstr("it runs before its forward 1F0"));
}

TEST(ValidatePlanTest, ADeadlockFixMayMoveAnActionWithWhatItNeeds) {
  // Neither "1B0 before 1F1" (before its forward) nor "1F1 after 1B0" (1B1 then precedes
  // 1F1) passes; moving 1F0 and 1B0 together does.
  EXPECT_THAT(
      ValidatePlan(TwoStages(false), Parse("0F0,0B0,0F1,0B1\r\n1F1,1F0,1B1,1B0\r\n")).message(),
      HasSubstr("move 1F0 and 1B0 before 1F1 in the row of rank 1 (checked"));
}

TEST(ValidatePlanTest, ADeadlockNoSingleMoveFixesSaysSo) {
  // Two crossings: any move that clears the first (microbatches 0, 1) leaves the second
  // (microbatches 2, 3), so every candidate fails the same dry run.
  StepSpec spec = TwoStages(false);
  spec.num_microbatches = 4;
  const absl::Status status = ValidatePlan(
      spec, Parse("0F0,0B0,0F1,0B1,0F2,0B2,0F3,0B3\r\n1F1,1F0,1B0,1B1,1F3,1F2,1B2,1B3\r\n"));
  EXPECT_THAT(status.message(), HasSubstr("deadlock: the unit-step dry run stops"));
  EXPECT_THAT(status.message(),
              HasSubstr("No single move of one action (or of one action with what it needs "
                        "from its own row) makes this plan pass; reorder several rows."));
}

TEST(BitwiseParityWarningTest, NamesTheFirstOutOfOrderWeightGradient) {
  const ScheduleTable table = Parse("0F0,0F1,0I0,0I1,0W1,0W0\r\n1F0,1I0,1F1,1I1,1W0,1W1\r\n");
  ASSERT_TRUE(ValidatePlan(TwoStages(true), table).ok());  // it runs; it is not bitwise
  const std::optional<std::string> warning = BitwiseParityWarning(table);
  ASSERT_TRUE(warning.has_value());
  EXPECT_THAT(*warning, HasSubstr("rank 0, step 5: 0W0 runs after 0W1 (step 4), so chunk 0 adds "
                                  "up its weight gradients out of microbatch order"));
}

TEST(BitwiseParityWarningTest, FusedBackwardsOutOfOrderAreNamedToo) {
  const std::optional<std::string> warning =
      BitwiseParityWarning(Parse("0F0,0F1,0B1,0B0\r\n1F0,1F1,1B1,1B0\r\n"));
  ASSERT_TRUE(warning.has_value());
  EXPECT_THAT(*warning, HasSubstr("rank 0, step 3: 0B0 runs after 0B1 (step 2)"));
}

TEST(BitwiseParityWarningTest, NoneForAPlanInMicrobatchOrder) {
  EXPECT_FALSE(BitwiseParityWarning(Parse("0F0,0F1,0I0,0I1,0W0,0W1\r\n1F0,1I0,1F1,1I1,1W0,1W1\r\n"))
                   .has_value());
}

// A compute_comms table as torch's lowering writes it for TwoStages(false).
constexpr char kComms[] =
    "0UNSHARD,0F0,0SEND_F0,0F1,0SEND_F1,0RECV_B0,0B0,0RECV_B1,0B1,0REDUCE_GRAD,0RESHARD\r\n"
    "1UNSHARD,1RECV_F0,1F0,1B0,1SEND_B0,1RECV_F1,1F1,1B1,1SEND_B1,1REDUCE_GRAD,1RESHARD\r\n";

std::string Replace(std::string text, const std::string& from, const std::string& to) {
  text.replace(text.find(from), from.size(), to);
  return text;
}

TEST(ComputeCommsTest, SendsAndReceivesThatTheStepGraphDerivesPass) {
  EXPECT_TRUE(ValidatePlan(TwoStages(false), Parse(kComms)).ok());
}

TEST(ComputeCommsTest, AMissingSendIsNamedWithRankStepAndCell) {
  const absl::Status status =
      ValidatePlan(TwoStages(false), Parse(Replace(kComms, ",1SEND_B1,", ",")));
  EXPECT_THAT(status.message(),
              HasSubstr("rank 1, step 10, cell 1SEND_B1: missing: the step graph sends this for "
                        "1B1 (step 7), but rank 1 has no such cell; add it after step 7"));
  EXPECT_THAT(status.message(), HasSubstr("[missing 1SEND_B1]"));
}

TEST(ComputeCommsTest, ASendTheGraphDoesNotDeriveIsAnError) {
  // Chunk 0 lives on rank 0: rank 1 cannot send its output.
  EXPECT_THAT(
      ValidatePlan(TwoStages(false), Parse(Replace(kComms, "1UNSHARD,", "0SEND_F0,"))).message(),
      HasSubstr("rank 1, step 0, cell 0SEND_F0: the step graph derives no such send: "
                "chunk 0 lives on rank 0, not on rank 1"));
  // The last chunk's forward output goes nowhere.
  EXPECT_THAT(
      ValidatePlan(TwoStages(false), Parse(Replace(kComms, "1UNSHARD,", "1SEND_F0,"))).message(),
      HasSubstr("rank 1, step 0, cell 1SEND_F0: the step graph derives no such send"));
}

TEST(ComputeCommsTest, AReceiveAfterItsConsumerIsAnError) {
  EXPECT_THAT(
      ValidatePlan(TwoStages(false), Parse(Replace(kComms, "1RECV_F0,1F0,", "1F0,1RECV_F0,")))
          .message(),
      HasSubstr("rank 1, step 2, cell 1RECV_F0: it receives the input of 1F0 after that runs "
                "(step 1): move it before step 1"));
}

TEST(ValidatePlanTest, MoreActivationsThanMaxInflightIsResourceExhausted) {
  const absl::Status status =
      ValidatePlan(TwoStages(false, 1), Parse("0F0,0F1,0B0,0B1\r\n1F0,1B0,1F1,1B1\r\n"));
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(status.message(),
              HasSubstr("rank 0, step 1, action 0F1 (s0 F c0 mb1): it makes rank 0 hold 2 "
                        "activations (F done, B not yet), above max_inflight = 1; it waits for a "
                        "B of an earlier microbatch to free one"));
}

TEST(ValidatePlanTest, AnActionOnTheWrongRankSaysWhereItLives) {
  EXPECT_THAT(
      ValidatePlan(TwoStages(false), Parse("0F0,0F1,0B0,0B1\r\n1F0,1B0,0F1,1B1\r\n")).message(),
      HasSubstr("rank 1, step 2, action 0F1 (s1 F c0 mb1): chunk 0 lives on rank 0, not "
                "on rank 1; move the action to row 0"));
}

TEST(ValidatePlanTest, ADuplicateSaysWhereItFirstRan) {
  EXPECT_THAT(
      ValidatePlan(TwoStages(false), Parse("0F0,0F1,0B0,0B1,0F1\r\n1F0,1B0,1F1,1B1\r\n")).message(),
      HasSubstr(
          "rank 0, step 4, action 0F1 (s0 F c0 mb1): it runs twice; it already ran at step 1"));
}

TEST(ValidatePlanTest, SplitActionsInAFusedStepAreRejected) {
  EXPECT_THAT(ValidatePlan(TwoStages(false), Parse("0F0,0I0\r\n1F0\r\n")).message(),
              HasSubstr("this step fuses the backward (split_backward = false): write one full "
                        "backward B per (chunk, microbatch), not I and W"));
}

TEST(ValidatePlanTest, OutOfRangeMicrobatchAndRowCount) {
  EXPECT_THAT(ValidatePlan(TwoStages(false), Parse("0F0,0F5\r\n1F0\r\n")).message(),
              HasSubstr("microbatch 5 does not exist; the step has microbatches 0 to 1"));
  EXPECT_THAT(ValidatePlan(TwoStages(false), Parse("0F0\r\n")).message(),
              HasSubstr("the schedule has 1 rows (ranks), but the step has 2 stages"));
}

}  // namespace
}  // namespace stagehand::runtime
