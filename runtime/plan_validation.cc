// ValidatePlan: structure, order, completeness, memory and a unit-step dry run of a plan.
// Not a planner: it never reorders anything, it says what to reorder.
#include "runtime/plan_validation.h"

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/stage_state.h"

namespace stagehand::runtime {
namespace {

// One action of a rank's row and the step (column) it sits in.
struct Item {
  Action action;
  int step = 0;
};

// Where a rank runs the actions of one (chunk, microbatch); -1 = not (yet) seen.
struct CellSteps {
  int forward = -1;
  int backward = -1;  // I, or B (fused)
  int weight = -1;    // W, or B (fused)
};

std::string Torch(const Action& action) { return CellToString({action}); }

std::string Both(const Action& action) {
  return absl::StrCat(Torch(action), " (", ActionToString(action), ")");
}

Action With(const Action& action, ActionKind kind) {
  return Action{action.stage, kind, action.chunk, action.microbatch};
}

class Checker {
 public:
  // `suggest_fixes`: on a deadlock, try single moves with this same check and suggest the
  // first that passes (off for the checks of those candidates themselves).
  Checker(const StepSpec& spec, const ScheduleTable& table, bool suggest_fixes = true)
      : spec_(spec), table_(table), suggest_fixes_(suggest_fixes) {}

  absl::Status Run() {
    if (absl::Status status = ValidateStepSpec(spec_); !status.ok()) return status;
    if (static_cast<int>(table_.rows.size()) != spec_.num_stages) {
      return absl::InvalidArgumentError(
          absl::StrCat("the schedule has ", table_.rows.size(), " rows (ranks), but the step has ",
                       spec_.num_stages, " stages\n", FormatGrid(table_)));
    }
    if (absl::Status status = Flatten(); !status.ok()) return status;
    if (absl::Status status = CheckRowOrder(); !status.ok()) return status;
    if (absl::Status status = CheckComplete(); !status.ok()) return status;
    if (absl::Status status = CheckMemory(); !status.ok()) return status;
    if (absl::Status status = DryRun(); !status.ok()) return status;
    return CheckComms();
  }

 private:
  absl::Status Fail(absl::StatusCode code, int rank, int step, const Action& action,
                    absl::string_view why, const std::string& placeholder = "") const {
    return absl::Status(
        code, absl::StrCat("rank ", rank, ", step ", step, ", action ", Both(action), ": ", why,
                           "\n", FormatGrid(table_, GridMark{rank, step, placeholder})));
  }
  absl::Status Bad(int rank, int step, const Action& action, absl::string_view why,
                   const std::string& placeholder = "") const {
    return Fail(absl::StatusCode::kInvalidArgument, rank, step, action, why, placeholder);
  }

  // 1. Every action belongs to the step and to its rank; rows become item lists.
  absl::Status Flatten() {
    items_.resize(spec_.num_stages);
    for (int r = 0; r < spec_.num_stages; ++r) {
      for (int t = 0; t < static_cast<int>(table_.rows[r].size()); ++t) {
        for (const Action& action : table_.rows[r][t]) {
          if (absl::Status status = CheckBelongs(r, t, action); !status.ok()) return status;
          if (action.kind == ActionKind::kBackward && spec_.split_backward) {
            items_[r].push_back({With(action, ActionKind::kBackwardInput), t});
            items_[r].push_back({With(action, ActionKind::kBackwardWeight), t});
          } else {
            items_[r].push_back({action, t});
          }
        }
      }
    }
    return absl::OkStatus();
  }

  absl::Status CheckBelongs(int rank, int step, const Action& action) const {
    if (action.stage != rank) {
      return Bad(rank, step, action,
                 absl::StrCat("the action names stage ", action.stage,
                              " but sits in the row of rank ", rank));
    }
    if (!IsCompute(action.kind)) {
      return Bad(rank, step, action, "only F, I, W and B are actions of a schedule table");
    }
    if (action.chunk < 0 || action.chunk >= spec_.num_chunks) {
      return Bad(rank, step, action,
                 absl::StrCat("chunk ", action.chunk, " does not exist; the step has chunks 0 to ",
                              spec_.num_chunks - 1));
    }
    const int home = spec_.chunk_to_stage[action.chunk];
    if (home != rank) {
      return Bad(rank, step, action,
                 absl::StrCat("chunk ", action.chunk, " lives on rank ", home, ", not on rank ",
                              rank, "; move the action to row ", home));
    }
    if (action.microbatch < 0 || action.microbatch >= spec_.num_microbatches) {
      return Bad(rank, step, action,
                 absl::StrCat("microbatch ", action.microbatch,
                              " does not exist; the step has microbatches 0 to ",
                              spec_.num_microbatches - 1));
    }
    const bool split_kind =
        action.kind == ActionKind::kBackwardInput || action.kind == ActionKind::kBackwardWeight;
    if (split_kind && !spec_.split_backward) {
      return Bad(rank, step, action,
                 "this step fuses the backward (split_backward = false): write one full "
                 "backward B per (chunk, microbatch), not I and W");
    }
    return absl::OkStatus();
  }

  // The step of `action` in `rank`'s row at or after item `from`, or -1.
  int StepOf(int rank, const Action& action, std::size_t from = 0) const {
    for (std::size_t i = from; i < items_[rank].size(); ++i) {
      if (items_[rank][i].action == action) return items_[rank][i].step;
    }
    return -1;
  }

  std::string WhereLater(int rank, const Action& action, std::size_t from) const {
    const int step = StepOf(rank, action, from);
    return step < 0 ? std::string(", which this rank never runs") : absl::StrCat(" at step ", step);
  }

  // 2. Once each, in dependency order within the row.
  absl::Status CheckRowOrder() {
    steps_.resize(spec_.num_stages);
    for (int r = 0; r < spec_.num_stages; ++r) {
      std::map<std::pair<int, int>, CellSteps>& seen = steps_[r];
      for (std::size_t i = 0; i < items_[r].size(); ++i) {
        const Action& action = items_[r][i].action;
        const int t = items_[r][i].step;
        CellSteps& x = seen[{action.chunk, action.microbatch}];
        const auto twice = [&](int first) {
          return Bad(r, t, action,
                     absl::StrCat("it runs twice; it already ran at step ", first,
                                  ". Each action runs once per step: remove one"));
        };
        switch (action.kind) {
          case ActionKind::kForward:
            if (x.forward >= 0) return twice(x.forward);
            x.forward = t;
            break;
          case ActionKind::kBackwardInput:
          case ActionKind::kBackward: {
            if (x.backward >= 0) return twice(x.backward);
            if (x.forward < 0) {
              const Action forward = With(action, ActionKind::kForward);
              return Bad(r, t, action,
                         absl::StrCat("it runs before its forward ", Torch(forward),
                                      WhereLater(r, forward, i),
                                      "; a backward waits for the activations its forward "
                                      "saved: move ",
                                      Torch(forward), " before it"));
            }
            x.backward = t;
            if (action.kind == ActionKind::kBackward) x.weight = t;
            break;
          }
          case ActionKind::kBackwardWeight: {
            if (x.weight >= 0) return twice(x.weight);
            if (x.backward < 0) {
              const Action input = With(action, ActionKind::kBackwardInput);
              return Bad(r, t, action,
                         absl::StrCat("it runs before its backward-input ", Torch(input),
                                      WhereLater(r, input, i),
                                      "; W waits for the output gradient I brings: move ",
                                      Torch(input), " before it"));
            }
            x.weight = t;
            break;
          }
          default:
            break;
        }
      }
    }
    return absl::OkStatus();
  }

  // 2b. Nothing missing.
  absl::Status CheckComplete() const {
    for (int r = 0; r < spec_.num_stages; ++r) {
      const int end = static_cast<int>(table_.rows[r].size());
      for (int c : ChunksOnStage(spec_, r)) {
        for (int mb = 0; mb < spec_.num_microbatches; ++mb) {
          const auto it = steps_[r].find({c, mb});
          const CellSteps x = it == steps_[r].end() ? CellSteps() : it->second;
          const Action forward{r, ActionKind::kForward, c, mb};
          const auto missing = [&](const Action& action, const std::string& hint) {
            return Bad(
                r, end, action,
                absl::StrCat("missing: rank ", r,
                             " never runs it. Every (chunk, "
                             "microbatch) of a rank needs F and then ",
                             spec_.split_backward ? "I and W (or one full B)" : "B", "; ", hint),
                absl::StrCat("missing ", Torch(action)));
          };
          if (x.forward < 0)
            return missing(forward, "add it before the backward of the same microbatch");
          if (!spec_.split_backward) {
            if (x.backward < 0) {
              return missing(
                  With(forward, ActionKind::kBackward),
                  absl::StrCat("add it after ", Torch(forward), " (step ", x.forward, ")"));
            }
            continue;
          }
          if (x.backward < 0) {
            return missing(
                With(forward, ActionKind::kBackwardInput),
                absl::StrCat("add it after ", Torch(forward), " (step ", x.forward, ")"));
          }
          if (x.weight < 0) {
            const Action input = With(forward, ActionKind::kBackwardInput);
            return missing(With(forward, ActionKind::kBackwardWeight),
                           absl::StrCat("add it after ", Torch(input), " (step ", x.backward,
                                        "); until it runs, the activations stay held"));
          }
        }
      }
    }
    return absl::OkStatus();
  }

  // 3. Activations held per rank never exceed max_inflight.
  absl::Status CheckMemory() const {
    if (spec_.max_inflight <= 0) return absl::OkStatus();
    for (int r = 0; r < spec_.num_stages; ++r) {
      int held = 0;
      for (const Item& item : items_[r]) {
        const ActionKind kind = item.action.kind;
        if (kind == ActionKind::kBackwardWeight || kind == ActionKind::kBackward) --held;
        if (kind != ActionKind::kForward) continue;
        if (++held > spec_.max_inflight) {
          return Fail(absl::StatusCode::kResourceExhausted, r, item.step, item.action,
                      absl::StrCat("it makes rank ", r, " hold ", held, " activations (F done, ",
                                   spec_.split_backward ? "W" : "B",
                                   " not yet), above max_inflight = ", spec_.max_inflight,
                                   "; it waits for a ", spec_.split_backward ? "W" : "B",
                                   " of an earlier microbatch to free one: move one before it, "
                                   "or raise max_inflight"));
        }
      }
    }
    return absl::OkStatus();
  }

  // 4. The unit-step dry run: each step, every rank runs its next action if its inputs
  //    arrived in an earlier step.
  //    Records the transfers the step graph derives, for CheckComms.
  absl::Status DryRun() {
    StepSpec unlimited = spec_;
    unlimited.max_inflight = 0;
    std::vector<StageState> states;
    for (int r = 0; r < spec_.num_stages; ++r) states.emplace_back(unlimited, r);
    std::vector<std::size_t> next(spec_.num_stages, 0);
    while (true) {
      std::vector<Item> started;
      bool work_left = false;
      for (int r = 0; r < spec_.num_stages; ++r) {
        if (next[r] == items_[r].size()) continue;
        work_left = true;
        const Item& item = items_[r][next[r]];
        if (states[r].Started(item.action).ok()) {
          started.push_back(item);
          ++next[r];
        }
      }
      if (!work_left) return absl::OkStatus();
      if (started.empty()) return Deadlock(next);
      for (const Item& item : started) {
        const Action& action = item.action;
        absl::StatusOr<std::vector<Transfer>> transfers = states[action.stage].Finished(action);
        if (!transfers.ok()) return absl::InternalError(transfers.status().message());
        for (const Transfer& transfer : *transfers) {
          derived_.push_back({transfer, item.step});
          if (absl::Status status = states[transfer.to_stage].InputArrived(transfer);
              !status.ok()) {
            return absl::InternalError(status.message());
          }
        }
      }
    }
  }

  // What the stuck head of a row waits for: the action on another rank that produces its
  // input (row order already guarantees the local inputs).
  struct Wait {
    int rank = 0;     // the stuck rank
    Item head;        // its next action
    Action producer;  // what it waits for
    int producer_step = -1;
    const char* what = "";  // "activation" or "gradient"
  };

  Wait WaitOf(int rank, const Item& head) const {
    Wait wait;
    wait.rank = rank;
    wait.head = head;
    const Action& action = head.action;
    int producer_chunk;
    ActionKind kind;
    if (action.kind == ActionKind::kForward) {
      producer_chunk = action.chunk - 1;
      kind = ActionKind::kForward;
      wait.what = "activation";
    } else {
      producer_chunk = action.chunk + 1;
      kind = spec_.split_backward ? ActionKind::kBackwardInput : ActionKind::kBackward;
      wait.what = "gradient";
    }
    if (producer_chunk < 0 || producer_chunk >= spec_.num_chunks) return wait;  // cannot happen
    const int producer_rank = spec_.chunk_to_stage[producer_chunk];
    wait.producer = Action{producer_rank, kind, producer_chunk, action.microbatch};
    wait.producer_step = StepOf(producer_rank, wait.producer);
    return wait;
  }

  absl::Status Deadlock(const std::vector<std::size_t>& next) const {
    int remaining = 0;
    std::vector<int> stuck;
    for (int r = 0; r < spec_.num_stages; ++r) {
      if (next[r] < items_[r].size()) {
        stuck.push_back(r);
        remaining += static_cast<int>(items_[r].size() - next[r]);
      }
    }
    // Follow "rank r waits for rank q" from the first stuck rank until a rank repeats.
    std::vector<Wait> chain;
    std::vector<int> visited;
    int r = stuck.front();
    while (std::find(visited.begin(), visited.end(), r) == visited.end()) {
      visited.push_back(r);
      chain.push_back(WaitOf(r, items_[r][next[r]]));
      r = chain.back().producer.stage;
      if (next[r] >= items_[r].size()) break;  // cannot happen: its producer would have run
    }
    const auto cycle_begin =
        std::find_if(chain.begin(), chain.end(), [&](const Wait& w) { return w.rank == r; });
    std::vector<Wait> cycle(cycle_begin == chain.end() ? chain.begin() : cycle_begin, chain.end());
    std::vector<std::string> lines;
    std::vector<std::string> ranks;
    for (const Wait& w : cycle) {
      const Item& blocker = items_[w.producer.stage][next[w.producer.stage]];
      lines.push_back(absl::StrCat(
          "  rank ", w.rank, ", step ", w.head.step, ": ", Torch(w.head.action), " waits for the ",
          w.what, " of ", Torch(w.producer), " (rank ", w.producer.stage, ", step ",
          w.producer_step, "), but rank ", w.producer.stage, " is stuck before it, at step ",
          blocker.step, " on ", Torch(blocker.action)));
      ranks.push_back(absl::StrCat("rank ", w.rank));
    }
    ranks.push_back(absl::StrCat("rank ", cycle.front().rank));
    const Wait& first = cycle.front();
    const std::string why = absl::StrCat(
        "deadlock: the unit-step dry run stops with ", remaining,
        " actions left, because these ranks wait on each other in a cycle (",
        absl::StrJoin(ranks, " -> "), "):\n", absl::StrJoin(lines, "\n"),
        "\nA rank must run what another waits for before it waits itself", Fix(cycle, next));
    return Bad(first.rank, first.head.step, first.head.action, why);
  }

  // One reordering of one rank's row: `moved` (item indices, ascending) go before item
  // `before`, or, when `after` >= 0, item `before` goes right after item `after`.
  struct Move {
    int rank = 0;
    std::vector<std::size_t> moved;
    std::size_t before = 0;
    int after = -1;
  };

  std::string MoveText(const Move& move) const {
    const std::vector<Item>& row = items_[move.rank];
    if (move.after >= 0) {
      return absl::StrCat("move ", Torch(row[move.before].action), " after ",
                          Torch(row[move.after].action), " in the row of rank ", move.rank);
    }
    std::vector<std::string> names;
    for (std::size_t i : move.moved) names.push_back(Torch(row[i].action));
    return absl::StrCat("move ", absl::StrJoin(names, " and "), " before ",
                        Torch(row[move.before].action), " in the row of rank ", move.rank);
  }

  // The plan with `move` applied, one action per step.
  ScheduleTable Apply(const Move& move) const {
    ScheduleTable table;
    for (int r = 0; r < spec_.num_stages; ++r) {
      std::vector<Action> row;
      for (const Item& item : items_[r]) row.push_back(item.action);
      if (r == move.rank) {
        std::vector<Action> reordered;
        for (std::size_t i = 0; i < row.size(); ++i) {
          const bool is_moved =
              std::find(move.moved.begin(), move.moved.end(), i) != move.moved.end();
          if (move.after < 0 && i == move.before) {
            for (std::size_t m : move.moved) reordered.push_back(row[m]);
          }
          if (is_moved || (move.after >= 0 && i == move.before)) continue;
          reordered.push_back(row[i]);
          if (move.after >= 0 && static_cast<int>(i) == move.after) {
            reordered.push_back(row[move.before]);
          }
        }
        row = std::move(reordered);
      }
      table.rows.emplace_back();
      for (const Action& action : row) table.rows.back().push_back({action});
    }
    return table;
  }

  // For each wait of the cycle, with producer P stuck behind blocker X on P's rank: move P
  // before X; move X after P; move P and what P needs from its own row before X. The text
  // of the first whose plan passes this whole check, or a sentence saying none does.
  std::string Fix(const std::vector<Wait>& cycle, const std::vector<std::size_t>& next) const {
    if (!suggest_fixes_) return ".";
    for (const Wait& w : cycle) {
      const int q = w.producer.stage;
      const std::size_t x = next[q];
      std::size_t p = x;
      while (p < items_[q].size() && items_[q][p].action != w.producer) ++p;
      if (p == items_[q].size()) continue;
      Move with_needs{q, {}, x};
      for (std::size_t i = x; i < p; ++i) {
        const Action& a = items_[q][i].action;
        if (a.chunk == w.producer.chunk && a.microbatch == w.producer.microbatch) {
          with_needs.moved.push_back(i);
        }
      }
      with_needs.moved.push_back(p);
      for (const Move& move : {Move{q, {p}, x}, Move{q, {}, x, static_cast<int>(p)}, with_needs}) {
        const ScheduleTable fixed = Apply(move);
        if (Checker(spec_, fixed, /*suggest_fixes=*/false).Run().ok()) {
          return absl::StrCat(": ", MoveText(move),
                              " (checked: the plan then passes this whole validation).");
        }
      }
    }
    return ". No single move of one action (or of one action with what it needs from its own "
           "row) makes this plan pass; reorder several rows.";
  }

  // 5. compute_comms files: each SEND / RECV cell is a transfer the step graph derives, on
  //    the right rank, after what it sends and before what receives it; none is missing.
  absl::Status CheckComms() const;

  const StepSpec& spec_;
  const ScheduleTable& table_;
  const bool suggest_fixes_;
  std::vector<std::vector<Item>> items_;           // (P, actions of the row in order)
  std::vector<std::pair<Transfer, int>> derived_;  // what the dry run sent, and the step sent
  std::vector<std::map<std::pair<int, int>, CellSteps>> steps_;  // (P) (chunk, mb) -> steps
};

bool IsSendOrRecv(CommCell::Op op) {
  return op == CommCell::Op::kSendF || op == CommCell::Op::kRecvF || op == CommCell::Op::kSendB ||
         op == CommCell::Op::kRecvB;
}

bool SameCell(const CommCell& a, const CommCell& b) {
  return a.op == b.op && a.chunk == b.chunk && a.microbatch == b.microbatch;
}

// A SEND or RECV cell the step graph derives: on `rank`, after (SEND) the step of what it
// sends or before (RECV) the step of what receives it.
struct ExpectedComm {
  int rank = 0;
  CommCell cell;
  Action compute;  // the producer (SEND) or the consumer (RECV)
  int bound = -1;  // compute's step in the row of `rank`
  bool matched = false;
};

absl::Status Checker::CheckComms() const {
  if (table_.comms.empty()) return absl::OkStatus();
  const auto fail = [&](int rank, int step, const std::string& cell, absl::string_view why,
                        const std::string& placeholder = "") {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", rank, ", step ", step, ", cell ", cell, ": ", why, "\n",
                     FormatGrid(table_, GridMark{rank, step, placeholder})));
  };
  std::vector<ExpectedComm> expected;
  for (const auto& [t, producer_step] : derived_) {
    const bool forward = t.kind == ActionKind::kSendForward;
    const ActionKind backward =
        spec_.split_backward ? ActionKind::kBackwardInput : ActionKind::kBackward;
    ExpectedComm send{t.from_stage, {}, {}, producer_step};
    send.cell.op = forward ? CommCell::Op::kSendF : CommCell::Op::kSendB;
    send.cell.chunk = forward ? t.chunk - 1 : t.chunk + 1;
    send.cell.microbatch = t.microbatch;
    send.compute = Action{t.from_stage, forward ? ActionKind::kForward : backward, send.cell.chunk,
                          t.microbatch};
    ExpectedComm recv{t.to_stage, {}, {}, -1};
    recv.cell.op = forward ? CommCell::Op::kRecvF : CommCell::Op::kRecvB;
    recv.cell.chunk = t.chunk;
    recv.cell.microbatch = t.microbatch;
    recv.compute =
        Action{t.to_stage, forward ? ActionKind::kForward : backward, t.chunk, t.microbatch};
    recv.bound = StepOf(t.to_stage, recv.compute);
    expected.push_back(send);
    expected.push_back(recv);
  }
  for (int r = 0; r < static_cast<int>(table_.comms.size()); ++r) {
    for (const CommCell& cell : table_.comms[r]) {
      if (!IsSendOrRecv(cell.op)) continue;  // UNSHARD, RESHARD, REDUCE_GRAD: ignored
      const std::string text = CommCellToString(cell);
      const bool send = cell.op == CommCell::Op::kSendF || cell.op == CommCell::Op::kSendB;
      const auto it = std::find_if(expected.begin(), expected.end(), [&](const ExpectedComm& e) {
        return e.rank == r && !e.matched && SameCell(e.cell, cell);
      });
      if (it == expected.end()) {
        const bool in_range = cell.chunk >= 0 && cell.chunk < spec_.num_chunks;
        const std::string why =
            !in_range ? absl::StrCat("chunk ", cell.chunk, " does not exist")
            : spec_.chunk_to_stage[cell.chunk] != r
                ? absl::StrCat("chunk ", cell.chunk, " lives on rank ",
                               spec_.chunk_to_stage[cell.chunk], ", not on rank ", r)
                : std::string(
                      "no such transfer crosses ranks in this plan (the neighbouring "
                      "chunk lives on the same rank, the chunk is at the end of the "
                      "model, or the cell appears twice)");
        return fail(r, cell.step, text,
                    absl::StrCat("the step graph derives no such ", send ? "send" : "receive", ": ",
                                 why, "; remove the cell"));
      }
      if (send ? cell.step < it->bound : cell.step > it->bound) {
        return fail(
            r, cell.step, text,
            absl::StrCat(send ? "it sends the output of " : "it receives the input of ",
                         Torch(it->compute), send ? " before " : " after ", "that runs (step ",
                         it->bound, "): move it ", send ? "after" : "before", " step ", it->bound));
      }
      it->matched = true;
    }
  }
  for (const ExpectedComm& e : expected) {
    if (e.matched) continue;
    const std::string text = CommCellToString(e.cell);
    const bool send = e.cell.op == CommCell::Op::kSendF || e.cell.op == CommCell::Op::kSendB;
    return fail(
        e.rank, static_cast<int>(table_.rows[e.rank].size()), text,
        absl::StrCat("missing: the step graph ", send ? "sends" : "receives", " this for ",
                     Torch(e.compute), " (step ", e.bound, "), but rank ", e.rank,
                     " has no such cell; add it ", send ? "after" : "before", " step ", e.bound),
        absl::StrCat("missing ", text));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidatePlan(const StepSpec& spec, const ScheduleTable& table) {
  return Checker(spec, table).Run();
}

std::optional<std::string> BitwiseParityWarning(const ScheduleTable& table) {
  struct Seen {
    Action action;
    int step = -1;
  };
  std::optional<std::pair<Seen, Seen>> first;  // (earlier, later) of the first pair
  for (int r = 0; r < static_cast<int>(table.rows.size()); ++r) {
    std::map<int, Seen> last;  // chunk -> its latest W or B so far
    for (int t = 0; t < static_cast<int>(table.rows[r].size()); ++t) {
      for (const Action& action : table.rows[r][t]) {
        if (action.kind != ActionKind::kBackwardWeight && action.kind != ActionKind::kBackward) {
          continue;
        }
        const auto it = last.find(action.chunk);
        if (it != last.end() && it->second.action.microbatch > action.microbatch &&
            (!first.has_value() || t < first->second.step)) {
          first = std::make_pair(it->second, Seen{action, t});
        }
        if (it == last.end() || it->second.action.microbatch < action.microbatch) {
          last[action.chunk] = Seen{action, t};
        }
      }
    }
  }
  if (!first.has_value()) return std::nullopt;
  const auto& [earlier, later] = *first;
  return absl::StrCat(
      "rank ", later.action.stage, ", step ", later.step, ": ", Torch(later.action), " runs after ",
      Torch(earlier.action), " (step ", earlier.step, "), so chunk ", later.action.chunk,
      " adds up its weight gradients out of microbatch order: the run "
      "trains, but its parameters match the sequential run only to float rounding, not bit "
      "for bit. Run each chunk's W's (or B's) in microbatch order to keep bitwise parity");
}

}  // namespace stagehand::runtime
