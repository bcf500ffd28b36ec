// Tests of ScheduleTable: torch cells, CSV (byte-for-byte round trips of files written as
// torch writes them, bad cells), the grid printout, and table <-> plan conversions.
// Not tests of validation (plan_validation_test.cc).
#include "runtime/schedule_table.h"

#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stagehand::runtime {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string RunfilePath(const std::string& name) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  return std::string(srcdir == nullptr ? "." : srcdir) + "/stagehand/tests/golden/" + name;
}

std::string ReadFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  EXPECT_TRUE(file.good()) << "cannot read " << path;
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

ScheduleTable Parse(const std::string& text) {
  absl::StatusOr<ScheduleTable> table = ParseScheduleCsv(text);
  EXPECT_TRUE(table.ok()) << table.status();
  return table.ok() ? *table : ScheduleTable();
}

TEST(ScheduleTableTest, ParsesTorchCells) {
  absl::StatusOr<TableCell> forward = ParseCell("0F0", 1);
  ASSERT_TRUE(forward.ok()) << forward.status();
  EXPECT_THAT(*forward, ElementsAre(Action{1, ActionKind::kForward, 0, 0}));
  EXPECT_THAT(*ParseCell("1I2", 1), ElementsAre(Action{1, ActionKind::kBackwardInput, 1, 2}));
  EXPECT_THAT(*ParseCell("1W2", 1), ElementsAre(Action{1, ActionKind::kBackwardWeight, 1, 2}));
  EXPECT_THAT(*ParseCell("2B10", 0), ElementsAre(Action{0, ActionKind::kBackward, 2, 10}));
  EXPECT_THAT(*ParseCell(" 3F1 ", 0), ElementsAre(Action{0, ActionKind::kForward, 3, 1}));
  EXPECT_TRUE(ParseCell("", 0)->empty());
  EXPECT_THAT(
      *ParseCell("(0F1;7B0)OVERLAP_F_B", 0),
      ElementsAre(Action{0, ActionKind::kForward, 0, 1}, Action{0, ActionKind::kBackward, 7, 0}));
}

TEST(ScheduleTableTest, CellTextRoundTrips) {
  for (const char* text : {"0F0", "1I2", "1W2", "2B0", "", "(0F1;7B0)OVERLAP_F_B"}) {
    absl::StatusOr<TableCell> cell = ParseCell(text, 0);
    ASSERT_TRUE(cell.ok()) << cell.status();
    EXPECT_EQ(CellToString(*cell), text);
  }
}

TEST(ScheduleTableTest, BadCellsSayWhatWasExpected) {
  EXPECT_THAT(ParseCell("1X2", 0).status().message(),
              HasSubstr("bad cell \"1X2\": unknown op \"X\"; expected <chunk><op><microbatch>"));
  EXPECT_THAT(ParseCell("F0", 0).status().message(),
              HasSubstr("bad cell \"F0\": expected <chunk><op><microbatch> with op F (forward)"));
  EXPECT_THAT(ParseCell("1F", 0).status().message(),
              HasSubstr("the microbatch after \"F\" is missing or not a number"));
  EXPECT_THAT(ParseCell("1F2x", 0).status().message(),
              HasSubstr("the microbatch after \"F\" is missing or not a number"));
  EXPECT_THAT(ParseCell("0SEND_F1", 0).status().message(),
              HasSubstr("SEND_F is a communication or sharding action of torch's compute_comms "
                        "format"));
  EXPECT_THAT(ParseCell("(0F1;7B0)", 0).status().message(),
              HasSubstr("a group is written (<action>;<action>)OVERLAP_F_B"));
}

TEST(ScheduleTableTest, ParsesTorchCommunicationCells) {
  for (const char* text :
       {"0SEND_F1", "1RECV_F1", "3SEND_B12", "2RECV_B0", "0UNSHARD", "8RESHARD", "0REDUCE_GRAD"}) {
    std::optional<CommCell> cell = ParseCommCell(text);
    ASSERT_TRUE(cell.has_value()) << text;
    EXPECT_EQ(CommCellToString(*cell), text);
  }
  EXPECT_EQ(ParseCommCell("3SEND_B12")->chunk, 3);
  EXPECT_EQ(ParseCommCell("3SEND_B12")->microbatch, 12);
  EXPECT_EQ(ParseCommCell("0UNSHARD")->microbatch, -1);
  for (const char* text : {"0F1", "0SEND_F", "SEND_F1", "0SEND_X1", ""}) {
    EXPECT_FALSE(ParseCommCell(text).has_value()) << text;
  }
}

TEST(ScheduleTableTest, AComputeCommsFileKeepsItsCommCellsAndRoundTrips) {
  const std::string text =
      "0UNSHARD,0F0,0SEND_F0,0RECV_B0,0B0,0REDUCE_GRAD,0RESHARD\r\n"
      "1UNSHARD,1RECV_F0,1F0,1B0,1SEND_B0,1REDUCE_GRAD,1RESHARD\r\n";
  absl::StatusOr<ScheduleTable> table = ParseScheduleCsv(text);
  ASSERT_TRUE(table.ok()) << table.status();
  ASSERT_EQ(table->comms.size(), 2u);
  EXPECT_EQ(table->comms[0].size(), 5u);
  EXPECT_EQ(table->comms[1][1].step, 1);  // 1RECV_F0
  EXPECT_TRUE(table->rows[1][1].empty());
  EXPECT_EQ(CellToString(table->rows[1][2]), "1F0");
  EXPECT_EQ(FormatScheduleCsv(*table), text);
  absl::StatusOr<StepSpec> spec = SpecFromTable(*table);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->num_chunks, 2);
  EXPECT_EQ(OrdersFromTable(*table, *spec)[1].size(), 2u);  // 1F0, 1B0
}

TEST(ScheduleTableTest, TorchCsvRoundTripsByteForByte) {
  // Both files were written by Python's csv.writer, exactly as torch's _dump_csv writes:
  // "\r\n" line ends, empty cells for idle steps, OVERLAP_F_B groups, mixed B / I / W.
  for (const char* name : {"torch_dualpipev_p2_m4.csv", "torch_interleaved_p2_m4.csv"}) {
    const std::string path = RunfilePath(name);
    absl::StatusOr<ScheduleTable> table = LoadScheduleCsv(path);
    ASSERT_TRUE(table.ok()) << table.status();
    EXPECT_EQ(table->rows.size(), 2u);
    EXPECT_EQ(table->line_terminator, "\r\n");
    EXPECT_EQ(FormatScheduleCsv(*table), ReadFile(path)) << name;
    const std::string copy = std::string(std::getenv("TEST_TMPDIR")) + "/" + name;
    ASSERT_TRUE(SaveScheduleCsv(copy, *table).ok());
    EXPECT_EQ(ReadFile(copy), ReadFile(path)) << name;
  }
}

TEST(ScheduleTableTest, KeepsLineEndingsAndQuotedCells) {
  EXPECT_EQ(FormatScheduleCsv(Parse("0F0,,0B0\n1F0,1B0\n")), "0F0,,0B0\n1F0,1B0\n");
  EXPECT_EQ(FormatScheduleCsv(Parse("0F0,0B0\r\n1F0,1B0")), "0F0,0B0\r\n1F0,1B0");
  EXPECT_EQ(FormatScheduleCsv(Parse("\"0F0\",0B0\r\n")), "0F0,0B0\r\n");
  EXPECT_EQ(FormatScheduleCsv(Parse("\"\"\r\n0F0\r\n")), "\"\"\r\n0F0\r\n");  // csv.writer's [""]
}

TEST(ScheduleTableTest, ABadCellInAFileNamesRankStepAndShowsTheGrid) {
  const absl::Status status =
      ParseScheduleCsv("0F0,0F1,0B0,0B1\r\n1F0,1B0,1X1,1B1\r\n", "my.csv").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "my.csv: rank 1 (line 2), step 2 (column 3): bad cell \"1X1\": unknown op \"X\"; "
            "expected <chunk><op><microbatch> with op F (forward), I (backward-input), W "
            "(backward-weight) or B (full backward), e.g. 0F0 or 1I2; an empty cell for an idle "
            "step; or a group such as (0F1;7B0)OVERLAP_F_B\n"
            "        Rank 0 Rank 1\n"
            "Step 0: 0F0    1F0\n"
            "Step 1: 0F1    1B0\n"
            "Step 2: 0B0    [1X1]  <-- rank 1, step 2\n"
            "Step 3: 0B1    1B1\n");
}

TEST(ScheduleTableTest, MissingFileIsNotFound) {
  EXPECT_EQ(LoadScheduleCsv("/nonexistent/schedule.csv").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(ScheduleTableTest, SpecComesFromTheTable) {
  absl::StatusOr<ScheduleTable> dualpipe =
      LoadScheduleCsv(RunfilePath("torch_dualpipev_p2_m4.csv"));
  ASSERT_TRUE(dualpipe.ok()) << dualpipe.status();
  absl::StatusOr<StepSpec> spec = SpecFromTable(*dualpipe, 5);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->num_stages, 2);
  EXPECT_EQ(spec->num_microbatches, 4);
  EXPECT_EQ(spec->num_chunks, 4);
  EXPECT_THAT(spec->chunk_to_stage, ElementsAre(0, 1, 1, 0));  // the V
  EXPECT_TRUE(spec->split_backward);                           // it has I and W
  EXPECT_EQ(spec->max_inflight, 5);
  absl::StatusOr<ScheduleTable> interleaved =
      LoadScheduleCsv(RunfilePath("torch_interleaved_p2_m4.csv"));
  ASSERT_TRUE(interleaved.ok()) << interleaved.status();
  spec = SpecFromTable(*interleaved);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_THAT(spec->chunk_to_stage, ElementsAre(0, 1, 0, 1));
  EXPECT_FALSE(spec->split_backward);
}

TEST(ScheduleTableTest, SpecFromTableRejectsImpossiblePlacements) {
  EXPECT_THAT(SpecFromTable(Parse("0F0,0B0\r\n1F0,0B0\r\n")).status().message(),
              HasSubstr("chunk 0 appears on rank 0 (step 0) and on rank 1 (step 1, 0B0); a chunk "
                        "(torch's stage index) lives on one rank"));
  EXPECT_THAT(SpecFromTable(Parse("0F0,0B0\r\n2F0,2B0\r\n")).status().message(),
              HasSubstr("chunk 1 appears in no row, but chunk 2 does"));
  EXPECT_THAT(SpecFromTable(Parse("0F0,1F0,1B0,0B0\r\n\r\n")).status().message(),
              HasSubstr("rank 1 (line 2) has no action"));
}

TEST(ScheduleTableTest, AFullBackwardSplitsInASplitStep) {
  const ScheduleTable table = Parse("0F0,0B0,0F1,0I1,0W1\r\n");
  absl::StatusOr<StepSpec> spec = SpecFromTable(table);
  ASSERT_TRUE(spec.ok()) << spec.status();
  const StageOrders orders = OrdersFromTable(table, *spec);
  ASSERT_EQ(orders.size(), 1u);
  EXPECT_THAT(orders[0], ElementsAre(Action{0, ActionKind::kForward, 0, 0},
                                     Action{0, ActionKind::kBackwardInput, 0, 0},
                                     Action{0, ActionKind::kBackwardWeight, 0, 0},
                                     Action{0, ActionKind::kForward, 0, 1},
                                     Action{0, ActionKind::kBackwardInput, 0, 1},
                                     Action{0, ActionKind::kBackwardWeight, 0, 1}));
}

TEST(ScheduleTableTest, LaysOrdersOutOnUnitSteps) {
  StepSpec spec;
  spec.num_stages = 2;
  spec.num_microbatches = 2;
  spec.num_chunks = 2;
  spec.chunk_to_stage = {0, 1};
  const auto a = [](int stage, ActionKind kind, int mb) { return Action{stage, kind, stage, mb}; };
  const StageOrders orders = {{a(0, ActionKind::kForward, 0), a(0, ActionKind::kForward, 1),
                               a(0, ActionKind::kBackward, 0), a(0, ActionKind::kBackward, 1)},
                              {a(1, ActionKind::kForward, 0), a(1, ActionKind::kBackward, 0),
                               a(1, ActionKind::kForward, 1), a(1, ActionKind::kBackward, 1)}};
  EXPECT_EQ(FormatScheduleCsv(TableFromOrders(spec, orders)),
            "0F0,0F1,,0B0,,0B1\r\n,1F0,1B0,1F1,1B1\r\n");
}

TEST(ScheduleTableTest, LayoutOfAStalledPlanKeepsEveryAction) {
  StepSpec spec;
  spec.num_stages = 1;
  spec.num_microbatches = 1;
  spec.num_chunks = 1;
  spec.chunk_to_stage = {0};
  const StageOrders orders = {
      {Action{0, ActionKind::kBackward, 0, 0}, Action{0, ActionKind::kForward, 0, 0}}};
  EXPECT_EQ(FormatScheduleCsv(TableFromOrders(spec, orders)), "0B0,0F0\r\n");
}

TEST(ScheduleTableTest, GridShowsStepsAsLinesAndRanksAsColumns) {
  EXPECT_EQ(FormatGrid(Parse("0F0,0F1,,0B0\r\n,1F0,1B0\r\n")),
            "        Rank 0 Rank 1\n"
            "Step 0: 0F0\n"
            "Step 1: 0F1    1F0\n"
            "Step 2:        1B0\n"
            "Step 3: 0B0\n");
  EXPECT_EQ(FormatGrid(Parse("0F0\r\n1F0\r\n"), GridMark{1, 1, "missing 1B0"}),
            "        Rank 0 Rank 1\n"
            "Step 0: 0F0    1F0\n"
            "Step 1:        [missing 1B0]  <-- rank 1, step 1\n");
}

TEST(ScheduleTableTest, LongGridsShowAWindowAroundTheMark) {
  std::string row;
  for (int mb = 0; mb < 60; ++mb)
    row += (mb ? "," : "") + std::to_string(0) + "F" + std::to_string(mb);
  const std::string grid = FormatGrid(Parse(row + "\r\n"), GridMark{0, 30, ""});
  EXPECT_THAT(grid, HasSubstr("... (steps 0 to 17 not shown)\n"));
  EXPECT_THAT(grid, HasSubstr("Step 30: [0F30]  <-- rank 0, step 30\n"));
  EXPECT_THAT(grid, HasSubstr("... (steps 43 to 59 not shown)\n"));
}

TEST(ScheduleTableTest, PeakInflightCountsForwardsNotYetFreed) {
  const auto a = [](ActionKind kind, int mb) { return Action{0, kind, 0, mb}; };
  EXPECT_EQ(PeakInflight({a(ActionKind::kForward, 0), a(ActionKind::kForward, 1),
                          a(ActionKind::kBackwardInput, 0), a(ActionKind::kForward, 2),
                          a(ActionKind::kBackwardWeight, 0), a(ActionKind::kForward, 3)}),
            3);
}

TEST(ScheduleTableTest, HugeChunkOrMicrobatchNumbersAreRefusedNotOverflowed) {
  for (const char* cell : {"0F2147483647", "2147483647F0"}) {
    absl::StatusOr<ScheduleTable> table = ParseScheduleCsv(std::string(cell) + "\n");
    if (!table.ok()) {
      EXPECT_THAT(std::string(table.status().message()), HasSubstr("at most")) << cell;
      continue;
    }
    absl::StatusOr<StepSpec> spec = SpecFromTable(*table);
    ASSERT_FALSE(spec.ok()) << cell;
    EXPECT_THAT(std::string(spec.status().message()), HasSubstr("at most")) << cell;
  }
}

}  // namespace
}  // namespace stagehand::runtime
