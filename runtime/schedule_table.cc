// ScheduleTable: torch-format cells and CSV, the grid printout, and table <-> plan
// conversions. Not a validator: a table that parses may still be a bad schedule.
#include "runtime/schedule_table.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "runtime/stage_state.h"

namespace stagehand::runtime {
namespace {

constexpr int kGridWindow = 12;     // steps shown either side of a mark in long grids
constexpr int kLongGridSteps = 40;  // grids longer than this are windowed

constexpr absl::string_view kOverlapSuffix = "OVERLAP_F_B";
constexpr absl::string_view kCellForm =
    "expected <chunk><op><microbatch> with op F (forward), I (backward-input), W "
    "(backward-weight) or B (full backward), e.g. 0F0 or 1I2; an empty cell for an idle step; "
    "or a group such as (0F1;7B0)OVERLAP_F_B";

// torch's action names that are not compute actions of a compute_only schedule.
constexpr absl::string_view kTorchOtherKinds[] = {"SEND_F",  "RECV_F",  "SEND_B",     "RECV_B",
                                                  "UNSHARD", "RESHARD", "REDUCE_GRAD"};

char OpLetter(ActionKind kind) {
  switch (kind) {
    case ActionKind::kForward:
      return 'F';
    case ActionKind::kBackwardInput:
      return 'I';
    case ActionKind::kBackwardWeight:
      return 'W';
    case ActionKind::kBackward:
      return 'B';
    default:
      return '?';
  }
}

std::string SingleToString(const Action& action) {
  return absl::StrCat(action.chunk, std::string(1, OpLetter(action.kind)), action.microbatch);
}

bool AllDigits(absl::string_view text) {
  return !text.empty() && text.find_first_not_of("0123456789") == absl::string_view::npos;
}

absl::StatusOr<Action> ParseSingle(absl::string_view text, int rank) {
  const auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("bad cell \"", text, "\": ", why));
  };
  const std::size_t op_begin = text.find_first_not_of("0123456789");
  if (op_begin == 0 || op_begin == absl::string_view::npos) return bad(kCellForm);
  const absl::string_view chunk_text = text.substr(0, op_begin);
  absl::string_view rest = text.substr(op_begin);
  const std::size_t op_end = rest.find_first_of("0123456789");
  const absl::string_view op = rest.substr(0, op_end);
  const absl::string_view microbatch_text =
      op_end == absl::string_view::npos ? absl::string_view() : rest.substr(op_end);
  for (absl::string_view other : kTorchOtherKinds) {
    if (op == other) {
      return bad(absl::StrCat(op,
                              " is a communication or sharding action of torch's compute_comms "
                              "format: it stands alone in a cell of a schedule row, never in a "
                              "compute cell or an OVERLAP_F_B group"));
    }
  }
  Action action;
  action.stage = rank;
  if (op == "F") {
    action.kind = ActionKind::kForward;
  } else if (op == "I") {
    action.kind = ActionKind::kBackwardInput;
  } else if (op == "W") {
    action.kind = ActionKind::kBackwardWeight;
  } else if (op == "B") {
    action.kind = ActionKind::kBackward;
  } else {
    return bad(absl::StrCat("unknown op \"", op, "\"; ", kCellForm));
  }
  if (!AllDigits(microbatch_text)) {
    return bad(
        absl::StrCat("the microbatch after \"", op, "\" is missing or not a number; ", kCellForm));
  }
  if (!absl::SimpleAtoi(chunk_text, &action.chunk) ||
      !absl::SimpleAtoi(microbatch_text, &action.microbatch)) {
    return bad("a number is too large");
  }
  return action;
}

// Splits one CSV line into fields: commas separate, a field that starts with '"' runs to
// its closing quote ("" inside is one quote). InvalidArgument for an unclosed quote.
absl::StatusOr<std::vector<std::string>> SplitCsvLine(absl::string_view line) {
  std::vector<std::string> fields;
  if (line.empty()) return fields;  // a blank line: a rank with no steps, as csv.reader reads it
  std::string field;
  std::size_t i = 0;
  while (true) {
    field.clear();
    if (i < line.size() && line[i] == '"') {
      ++i;
      bool closed = false;
      while (i < line.size()) {
        if (line[i] == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') {
            field += '"';
            i += 2;
            continue;
          }
          ++i;
          closed = true;
          break;
        }
        field += line[i++];
      }
      if (!closed) return absl::InvalidArgumentError("a quoted cell is not closed");
      while (i < line.size() && line[i] != ',') field += line[i++];
    } else {
      while (i < line.size() && line[i] != ',') field += line[i++];
    }
    fields.push_back(field);
    if (i >= line.size()) break;
    ++i;  // the comma
  }
  return fields;
}

std::vector<std::vector<std::string>> CellTexts(const ScheduleTable& table) {
  std::vector<std::vector<std::string>> texts;
  for (std::size_t r = 0; r < table.rows.size(); ++r) {
    std::vector<std::string> line;
    for (const TableCell& cell : table.rows[r]) line.push_back(CellToString(cell));
    if (r < table.comms.size()) {
      for (const CommCell& comm : table.comms[r]) {
        if (comm.step >= 0 && comm.step < static_cast<int>(line.size())) {
          line[comm.step] = CommCellToString(comm);
        }
      }
    }
    texts.push_back(std::move(line));
  }
  return texts;
}

constexpr std::pair<CommCell::Op, absl::string_view> kCommOps[] = {
    {CommCell::Op::kSendF, "SEND_F"},          {CommCell::Op::kRecvF, "RECV_F"},
    {CommCell::Op::kSendB, "SEND_B"},          {CommCell::Op::kRecvB, "RECV_B"},
    {CommCell::Op::kUnshard, "UNSHARD"},       {CommCell::Op::kReshard, "RESHARD"},
    {CommCell::Op::kReduceGrad, "REDUCE_GRAD"}};

bool NamesMicrobatch(CommCell::Op op) {
  return op == CommCell::Op::kSendF || op == CommCell::Op::kRecvF || op == CommCell::Op::kSendB ||
         op == CommCell::Op::kRecvB;
}

}  // namespace

std::string CommCellToString(const CommCell& cell) {
  std::string text = std::to_string(cell.chunk);
  for (const auto& [op, name] : kCommOps) {
    if (op == cell.op) absl::StrAppend(&text, name);
  }
  if (cell.microbatch >= 0) absl::StrAppend(&text, cell.microbatch);
  return text;
}

std::optional<CommCell> ParseCommCell(absl::string_view text) {
  text = absl::StripAsciiWhitespace(text);
  const std::size_t op_begin = text.find_first_not_of("0123456789");
  if (op_begin == 0 || op_begin == absl::string_view::npos) return std::nullopt;
  const absl::string_view rest = text.substr(op_begin);
  const std::size_t op_end = rest.find_first_of("0123456789");
  const absl::string_view op = rest.substr(0, op_end);
  const absl::string_view microbatch =
      op_end == absl::string_view::npos ? absl::string_view() : rest.substr(op_end);
  for (const auto& [kind, name] : kCommOps) {
    if (op != name) continue;
    CommCell cell;
    cell.op = kind;
    if (!absl::SimpleAtoi(text.substr(0, op_begin), &cell.chunk)) return std::nullopt;
    if (microbatch.empty()) {
      if (NamesMicrobatch(kind)) return std::nullopt;  // "0SEND_F": not a cell torch writes
      return cell;
    }
    if (!AllDigits(microbatch) || !absl::SimpleAtoi(microbatch, &cell.microbatch)) {
      return std::nullopt;
    }
    return cell;
  }
  return std::nullopt;
}

std::string CellToString(const TableCell& cell) {
  if (cell.empty()) return "";
  if (cell.size() == 1) return SingleToString(cell[0]);
  std::vector<std::string> parts;
  for (const Action& action : cell) parts.push_back(SingleToString(action));
  return absl::StrCat("(", absl::StrJoin(parts, ";"), ")", kOverlapSuffix);
}

absl::StatusOr<TableCell> ParseCell(absl::string_view text, int rank) {
  const absl::string_view stripped = absl::StripAsciiWhitespace(text);
  TableCell cell;
  if (stripped.empty()) return cell;
  if (stripped.front() != '(') {
    absl::StatusOr<Action> action = ParseSingle(stripped, rank);
    if (!action.ok()) return action.status();
    cell.push_back(*action);
    return cell;
  }
  const std::size_t close = stripped.find(')');
  if (close == absl::string_view::npos || stripped.substr(close + 1) != kOverlapSuffix) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad cell \"", stripped, "\": a group is written (<action>;<action>)",
                     kOverlapSuffix, ", e.g. (0F1;7B0)", kOverlapSuffix));
  }
  for (absl::string_view part : absl::StrSplit(stripped.substr(1, close - 1), ';')) {
    part = absl::StripAsciiWhitespace(part);
    if (part.empty()) continue;
    absl::StatusOr<Action> action = ParseSingle(part, rank);
    if (!action.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("in group \"", stripped, "\": ", action.status().message()));
    }
    cell.push_back(*action);
  }
  if (cell.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad cell \"", stripped, "\": the group names no action"));
  }
  return cell;
}

absl::StatusOr<ScheduleTable> ParseScheduleCsv(absl::string_view text, absl::string_view source) {
  ScheduleTable table;
  if (text.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": empty schedule; expected one CSV row of cells per rank"));
  }
  const std::size_t first_newline = text.find('\n');
  table.line_terminator = first_newline != absl::string_view::npos && first_newline > 0 &&
                                  text[first_newline - 1] == '\r'
                              ? "\r\n"
                              : (first_newline == absl::string_view::npos ? "\r\n" : "\n");
  table.final_line_terminator = text.back() == '\n';
  absl::string_view body = text;
  if (table.final_line_terminator) {
    body.remove_suffix(1);
    if (!body.empty() && body.back() == '\r') body.remove_suffix(1);
  }
  std::vector<absl::string_view> lines = absl::StrSplit(body, '\n');
  std::vector<std::vector<std::string>> texts;
  for (absl::string_view line : lines) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    absl::StatusOr<std::vector<std::string>> fields = SplitCsvLine(line);
    if (!fields.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": rank ", texts.size(), " (line ",
                                                     texts.size() + 1,
                                                     "): ", fields.status().message()));
    }
    texts.push_back(*std::move(fields));
  }
  std::vector<std::vector<CommCell>> comms(texts.size());
  bool any_comm = false;
  for (int rank = 0; rank < static_cast<int>(texts.size()); ++rank) {
    std::vector<TableCell> row;
    for (int step = 0; step < static_cast<int>(texts[rank].size()); ++step) {
      if (std::optional<CommCell> comm = ParseCommCell(texts[rank][step]); comm.has_value()) {
        comm->step = step;
        comms[rank].push_back(*comm);
        any_comm = true;
        row.emplace_back();  // the column holds no compute action
        continue;
      }
      absl::StatusOr<TableCell> cell = ParseCell(texts[rank][step], rank);
      if (!cell.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            source, ": rank ", rank, " (line ", rank + 1, "), step ", step, " (column ", step + 1,
            "): ", cell.status().message(), "\n", FormatTextGrid(texts, GridMark{rank, step, ""})));
      }
      row.push_back(*std::move(cell));
    }
    table.rows.push_back(std::move(row));
  }
  if (any_comm) table.comms = std::move(comms);
  return table;
}

std::string FormatScheduleCsv(const ScheduleTable& table) {
  std::string text;
  const std::vector<std::vector<std::string>> texts = CellTexts(table);
  for (std::size_t r = 0; r < table.rows.size(); ++r) {
    const std::vector<TableCell>& row = table.rows[r];
    const std::vector<std::string>& cells = texts[r];
    if (row.size() == 1 && cells[0].empty()) {
      text += "\"\"";  // csv.writer's form of a row with one empty field
    } else {
      text += absl::StrJoin(cells, ",");
    }
    if (r + 1 < table.rows.size() || table.final_line_terminator) text += table.line_terminator;
  }
  return text;
}

absl::StatusOr<ScheduleTable> LoadScheduleCsv(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file.good()) {
    return absl::NotFoundError(absl::StrCat("cannot open schedule file \"", path, "\""));
  }
  std::stringstream text;
  text << file.rdbuf();
  return ParseScheduleCsv(text.str(), path);
}

absl::Status SaveScheduleCsv(const std::string& path, const ScheduleTable& table) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  if (!file.good()) {
    return absl::PermissionDeniedError(absl::StrCat("cannot write schedule file \"", path, "\""));
  }
  file << FormatScheduleCsv(table);
  file.close();
  if (!file.good()) {
    return absl::DataLossError(absl::StrCat("writing schedule file \"", path, "\" failed"));
  }
  return absl::OkStatus();
}

std::string FormatGrid(const ScheduleTable& table, const std::optional<GridMark>& mark) {
  return FormatTextGrid(CellTexts(table), mark);
}

std::string FormatTextGrid(const std::vector<std::vector<std::string>>& cells,
                           const std::optional<GridMark>& mark) {
  const int num_ranks = static_cast<int>(cells.size());
  std::vector<std::vector<std::string>> shown = cells;
  if (mark.has_value() && mark->rank >= 0 && mark->rank < num_ranks && mark->step >= 0) {
    std::vector<std::string>& row = shown[mark->rank];
    if (mark->step >= static_cast<int>(row.size())) row.resize(mark->step + 1);
    if (row[mark->step].empty()) row[mark->step] = mark->placeholder;
    row[mark->step] = absl::StrCat("[", row[mark->step], "]");
  }
  int num_steps = 0;
  for (const auto& row : shown) num_steps = std::max(num_steps, static_cast<int>(row.size()));
  int first = 0, last = num_steps;  // steps [first, last) are printed
  if (mark.has_value() && num_steps > kLongGridSteps) {
    first = std::max(0, mark->step - kGridWindow);
    last = std::min(num_steps, mark->step + kGridWindow + 1);
  }
  const int label_digits = static_cast<int>(std::to_string(std::max(num_steps - 1, 0)).size());
  const auto cell_at = [&](int rank, int step) -> const std::string& {
    static const std::string kEmpty;
    return step < static_cast<int>(shown[rank].size()) ? shown[rank][step] : kEmpty;
  };
  std::vector<std::size_t> widths(num_ranks);
  for (int r = 0; r < num_ranks; ++r) {
    widths[r] = absl::StrCat("Rank ", r).size();
    for (int t = first; t < last; ++t) widths[r] = std::max(widths[r], cell_at(r, t).size());
  }
  const auto pad = [](const std::string& text, std::size_t width) {
    return text + std::string(width - std::min(width, text.size()), ' ');
  };
  const std::string indent(5 + label_digits + 2, ' ');  // "Step " + digits + ": "
  std::vector<std::string> header;
  for (int r = 0; r < num_ranks; ++r) header.push_back(pad(absl::StrCat("Rank ", r), widths[r]));
  std::string text = std::string(
      absl::StripTrailingAsciiWhitespace(absl::StrCat(indent, absl::StrJoin(header, " "))));
  text += "\n";
  if (first > 0) absl::StrAppend(&text, "... (steps 0 to ", first - 1, " not shown)\n");
  for (int t = first; t < last; ++t) {
    std::string number = std::to_string(t);
    number = std::string(label_digits - number.size(), '0') + number;
    std::vector<std::string> row;
    for (int r = 0; r < num_ranks; ++r) row.push_back(pad(cell_at(r, t), widths[r]));
    std::string line = absl::StrCat("Step ", number, ": ", absl::StrJoin(row, " "));
    line = std::string(absl::StripTrailingAsciiWhitespace(line));
    if (mark.has_value() && mark->step == t) {
      absl::StrAppend(&line, "  <-- rank ", mark->rank, ", step ", t);
    }
    absl::StrAppend(&text, line, "\n");
  }
  if (last < num_steps) {
    absl::StrAppend(&text, "... (steps ", last, " to ", num_steps - 1, " not shown)\n");
  }
  return text;
}

absl::StatusOr<StepSpec> SpecFromTable(const ScheduleTable& table, int max_inflight) {
  if (table.rows.empty()) {
    return absl::InvalidArgumentError("the schedule has no rows; expected one row per rank");
  }
  struct Where {
    int rank = -1;
    int step = -1;
  };
  std::map<int, Where> chunk_home;  // chunk -> first place named
  int max_chunk = -1, max_microbatch = -1;
  bool split = false;
  for (int r = 0; r < static_cast<int>(table.rows.size()); ++r) {
    for (int t = 0; t < static_cast<int>(table.rows[r].size()); ++t) {
      for (const Action& action : table.rows[r][t]) {
        auto [it, inserted] = chunk_home.emplace(action.chunk, Where{r, t});
        if (!inserted && it->second.rank != r) {
          return absl::InvalidArgumentError(absl::StrCat(
              "chunk ", action.chunk, " appears on rank ", it->second.rank, " (step ",
              it->second.step, ") and on rank ", r, " (step ", t, ", ", CellToString({action}),
              "); a chunk (torch's stage index) lives on one rank"));
        }
        max_chunk = std::max(max_chunk, action.chunk);
        max_microbatch = std::max(max_microbatch, action.microbatch);
        split = split || action.kind == ActionKind::kBackwardInput ||
                action.kind == ActionKind::kBackwardWeight;
      }
    }
  }
  if (max_chunk < 0) return absl::InvalidArgumentError("the schedule names no action");
  // Bounds before any count is formed (max + 1 would overflow at INT_MAX) or allocated.
  constexpr int kMaxChunks = 1 << 16, kMaxMicrobatches = 1 << 20;
  if (max_chunk >= kMaxChunks || max_microbatch >= kMaxMicrobatches) {
    return absl::InvalidArgumentError(
        absl::StrCat("the schedule names chunk ", max_chunk, " and microbatch ", max_microbatch,
                     "; a schedule holds at most ", kMaxChunks, " chunks and ", kMaxMicrobatches,
                     " microbatches"));
  }
  StepSpec spec;
  spec.num_stages = static_cast<int>(table.rows.size());
  spec.num_microbatches = max_microbatch + 1;
  spec.num_chunks = max_chunk + 1;
  spec.split_backward = split;
  spec.max_inflight = max_inflight;
  for (int c = 0; c < spec.num_chunks; ++c) {
    const auto it = chunk_home.find(c);
    if (it == chunk_home.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("chunk ", c, " appears in no row, but chunk ", max_chunk,
                       " does; chunks (torch's stage indices) are numbered 0 to C-1 without gaps"));
    }
    spec.chunk_to_stage.push_back(it->second.rank);
  }
  for (int r = 0; r < spec.num_stages; ++r) {
    if (std::find(spec.chunk_to_stage.begin(), spec.chunk_to_stage.end(), r) ==
        spec.chunk_to_stage.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("rank ", r, " (line ", r + 1, ") has no action; every rank holds a chunk"));
    }
  }
  return spec;
}

StageOrders OrdersFromTable(const ScheduleTable& table, const StepSpec& spec) {
  StageOrders orders(table.rows.size());
  for (std::size_t r = 0; r < table.rows.size(); ++r) {
    for (const TableCell& cell : table.rows[r]) {
      for (const Action& action : cell) {
        if (action.kind == ActionKind::kBackward && spec.split_backward) {
          orders[r].push_back(
              Action{action.stage, ActionKind::kBackwardInput, action.chunk, action.microbatch});
          orders[r].push_back(
              Action{action.stage, ActionKind::kBackwardWeight, action.chunk, action.microbatch});
        } else {
          orders[r].push_back(action);
        }
      }
    }
  }
  return orders;
}

ScheduleTable TableFromOrders(const StepSpec& spec, const StageOrders& orders) {
  StepSpec unlimited = spec;
  unlimited.max_inflight = 0;  // memory is checked by ValidatePlan, not by the layout
  const int num_ranks = static_cast<int>(orders.size());
  ScheduleTable table;
  table.rows.resize(num_ranks);
  if (num_ranks != spec.num_stages || !ValidateStepSpec(spec).ok()) {
    for (int s = 0; s < num_ranks; ++s) {  // no step graph to lay out on: one action a step
      for (const Action& action : orders[s]) table.rows[s].push_back({action});
    }
    return table;
  }
  std::vector<StageState> states;
  for (int s = 0; s < num_ranks; ++s) states.emplace_back(unlimited, s);
  std::vector<std::size_t> next(num_ranks, 0);
  while (true) {
    std::vector<Action> started;
    bool work_left = false;
    for (int s = 0; s < num_ranks; ++s) {
      if (next[s] == orders[s].size()) continue;
      work_left = true;
      const Action& action = orders[s][next[s]];
      if (states[s].Started(action).ok()) {
        started.push_back(action);
        table.rows[s].push_back({action});
        ++next[s];
      } else {
        table.rows[s].push_back({});
      }
    }
    if (!work_left) break;
    if (started.empty()) {  // stalled: drop this step's idles, append the rest as is
      for (int s = 0; s < num_ranks; ++s) {
        if (next[s] < orders[s].size()) table.rows[s].pop_back();
        for (; next[s] < orders[s].size(); ++next[s]) table.rows[s].push_back({orders[s][next[s]]});
      }
      break;
    }
    for (const Action& action : started) {
      absl::StatusOr<std::vector<Transfer>> transfers = states[action.stage].Finished(action);
      if (!transfers.ok()) continue;
      for (const Transfer& transfer : *transfers) {
        states[transfer.to_stage].InputArrived(transfer).IgnoreError();
      }
    }
  }
  // Trailing idle steps carry no information.
  for (auto& row : table.rows) {
    while (!row.empty() && row.back().empty()) row.pop_back();
  }
  return table;
}

int PeakInflight(const std::vector<Action>& order) {
  int held = 0, peak = 0;
  for (const Action& action : order) {
    if (action.kind == ActionKind::kForward) peak = std::max(peak, ++held);
    if (action.kind == ActionKind::kBackwardWeight || action.kind == ActionKind::kBackward) --held;
  }
  return peak;
}

}  // namespace stagehand::runtime
