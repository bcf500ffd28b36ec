// ScheduleTable: a pipeline schedule as data, one row of steps per rank, read and written
// in PyTorch pipelining's CSV format ("0F0,1I2,,1W2"), and its conversions to and from
// per-stage plans. Not a validator (plan_validation.h) and not an executor: it only reads,
// writes, converts and lays out.
#ifndef STAGEHAND_RUNTIME_SCHEDULE_TABLE_H_
#define STAGEHAND_RUNTIME_SCHEDULE_TABLE_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "runtime/action.h"
#include "runtime/step_spec.h"

namespace stagehand::runtime {

// What one rank does in one step: nothing (idle), one compute action, or several that it
// runs back to back within the step (torch's OVERLAP_F_B: a forward paired with a
// backward). Each action's `stage` is the rank (the row); its `chunk` is what torch calls
// the stage index.
using TableCell = std::vector<Action>;

// A cell as torch's _Action prints it: "<chunk><op><microbatch>" with op
//   F = forward (F)   I = backward-input (I)   W = backward-weight (W)   B = full backward (B)
// (Stagehand's names in parentheses), "(0F1;7B0)OVERLAP_F_B" for a group, "" for idle.
std::string CellToString(const TableCell& cell);
// Inverse of CellToString for a cell of `rank`; surrounding spaces are ignored, as torch
// does. InvalidArgument says what was expected (and, for torch's communication actions,
// that a compute_only schedule is wanted).
absl::StatusOr<TableCell> ParseCell(absl::string_view text, int rank);

// A cell of torch's compute_comms format (what torchtitan writes after lowering) that is not
// a compute action, as torch's _Action prints it: "<stage><op><microbatch>" with op SEND_F,
// RECV_F, SEND_B or RECV_B, and "<stage><op>" with op UNSHARD, RESHARD or REDUCE_GRAD.
// SEND/RECV are checked against the transfers the step graph derives (ValidatePlan); UNSHARD,
// RESHARD and REDUCE_GRAD are read, kept and otherwise ignored (no data parallelism yet).
struct CommCell {
  enum class Op { kSendF, kRecvF, kSendB, kRecvB, kUnshard, kReshard, kReduceGrad };
  Op op = Op::kSendF;
  int chunk = 0;        // torch's stage index: for SEND the sender's, for RECV the receiver's
  int microbatch = -1;  // -1 when the cell names none (UNSHARD, RESHARD, REDUCE_GRAD)
  int step = 0;         // its column in the rank's row (where rows[rank][step] is empty)
};
// "0SEND_F1", "8UNSHARD".
std::string CommCellToString(const CommCell& cell);
// The comm cell `text` names, nullopt if `text` is not one (e.g. a compute cell); step 0.
std::optional<CommCell> ParseCommCell(absl::string_view text);

struct ScheduleTable {
  std::vector<std::vector<TableCell>> rows;  // (P, steps of that rank)
  // compute_comms files only: per rank, its comm cells in row order; each sits in a column
  // whose `rows` cell is empty. Empty for compute_only tables (what planners produce).
  std::vector<std::vector<CommCell>> comms;
  // How the CSV text ended its lines, kept so that a loaded file is written back byte for
  // byte. Python's csv.writer, which torch's _dump_csv uses, writes "\r\n" after each row.
  std::string line_terminator = "\r\n";
  bool final_line_terminator = true;
};

// Parses CSV text, one row per rank, as torch's _load_csv reads it: cells separated by
// commas (double-quoted cells allowed), an empty cell = idle. Both of torch's formats are
// read: compute_only (F, I, W, B, OVERLAP_F_B) and compute_comms (also the CommCell ops).
// `source` names the text in errors, which give the rank, the step and the bad cell, and
// print the grid with the cell marked.
absl::StatusOr<ScheduleTable> ParseScheduleCsv(absl::string_view text,
                                               absl::string_view source = "schedule");
// The CSV text of `table`: what torch's _dump_csv writes for the same schedule.
std::string FormatScheduleCsv(const ScheduleTable& table);
// File versions: NotFound / PermissionDenied-style errors name the path.
absl::StatusOr<ScheduleTable> LoadScheduleCsv(const std::string& path);
absl::Status SaveScheduleCsv(const std::string& path, const ScheduleTable& table);

// The cell to mark in FormatGrid. `step` may equal the row's length: the mark then shows
// `placeholder` in the first free step of the row (where a missing action would go).
struct GridMark {
  int rank = 0;
  int step = 0;
  std::string placeholder;
};

// The rank-by-step grid as torch's _format_pipeline_order prints it: one line per step,
// one column per rank. The marked cell is shown in [brackets] and its line ends with
// "<-- rank r, step t". Grids longer than 40 steps show 12 steps either side of the mark.
std::string FormatGrid(const ScheduleTable& table, const std::optional<GridMark>& mark = {});
// The same for cells given as text (a file whose cells do not all parse).
std::string FormatTextGrid(const std::vector<std::vector<std::string>>& cells,
                           const std::optional<GridMark>& mark = {});

// A plan as per-stage compute orders: orders[s] is what stage s runs, in order.
using StageOrders = std::vector<std::vector<Action>>;

// The step a table describes: P = its rows, C = 1 + the largest chunk, M = 1 + the largest
// microbatch, each chunk on the rank whose row names it, split_backward iff an I or a W
// appears. InvalidArgument for no rows, a chunk on two ranks, a chunk on none, a rank with
// no chunk.
absl::StatusOr<StepSpec> SpecFromTable(const ScheduleTable& table, int max_inflight = 0);

// The table's actions per rank in row order, idle cells skipped. A full backward (torch's
// B) stays one B in a fused spec and becomes I then W in a split one.
StageOrders OrdersFromTable(const ScheduleTable& table, const StepSpec& spec);

// Lays `orders` out on steps: a unit-step dry run in which, at each step, every rank runs
// its next action if that action's inputs arrived in an earlier step, and idles otherwise.
// Orders that stall keep their remaining actions, appended without idle steps (so that
// ValidatePlan can say why); so do orders that do not fit `spec` (one list per stage).
ScheduleTable TableFromOrders(const StepSpec& spec, const StageOrders& orders);

// Most (chunk, microbatch) activations `order` holds at once (F finished, W/B not).
int PeakInflight(const std::vector<Action>& order);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_SCHEDULE_TABLE_H_
