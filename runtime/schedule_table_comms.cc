// torch's compute_only -> compute_comms lowering (unshard/reshard, reduce-grad, send/recv).
// Not a validator: plan_validation.cc checks the SEND/RECV cells of a loaded file.
#include "runtime/schedule_table_comms.h"

#include <algorithm>
#include <deque>
#include <set>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {
namespace {

constexpr int kMaxActiveStages = 3;  // torch's default for _add_unshard_reshard

// One entry of a lowered row: a compute cell, or a comm cell when `is_comm`.
struct Entry {
  TableCell compute;
  bool is_comm = false;
  CommCell comm;
};

Entry Comm(CommCell::Op op, int chunk, int microbatch = -1) {
  Entry entry;
  entry.is_comm = true;
  entry.comm.op = op;
  entry.comm.chunk = chunk;
  entry.comm.microbatch = microbatch;
  return entry;
}

// 1. UNSHARD / RESHARD around one rank's compute cells.
std::vector<Entry> AddUnshardReshard(const std::vector<TableCell>& cells) {
  std::vector<const TableCell*> compute;
  for (const TableCell& cell : cells) {
    if (!cell.empty()) compute.push_back(&cell);
  }
  std::vector<int> active;  // in the order they were unsharded
  std::vector<Entry> out;
  for (std::size_t i = 0; i < compute.size(); ++i) {
    std::vector<int> next;  // the next kMaxActiveStages distinct chunks from here
    for (std::size_t j = i; j < compute.size() && next.size() < kMaxActiveStages; ++j) {
      for (const Action& action : *compute[j]) {
        if (std::find(next.begin(), next.end(), action.chunk) == next.end()) {
          next.push_back(action.chunk);
        }
      }
    }
    for (std::size_t k = 0; k < active.size();) {
      if (std::find(next.begin(), next.end(), active[k]) == next.end()) {
        out.push_back(Comm(CommCell::Op::kReshard, active[k]));
        active.erase(active.begin() + k);
      } else {
        ++k;
      }
    }
    for (int chunk : next) {
      if (std::find(active.begin(), active.end(), chunk) != active.end()) continue;
      out.push_back(Comm(CommCell::Op::kUnshard, chunk));
      active.push_back(chunk);
    }
    Entry entry;
    entry.compute = *compute[i];
    out.push_back(std::move(entry));
  }
  for (int chunk : active) out.push_back(Comm(CommCell::Op::kReshard, chunk));
  return out;
}

// 2. REDUCE_GRAD of a chunk after its M-th W or B.
std::vector<Entry> AddReduceGrad(const std::vector<Entry>& row, int num_microbatches) {
  std::vector<Entry> out;
  std::vector<std::pair<int, int>> counts;  // (chunk, W/B count)
  for (const Entry& entry : row) {
    out.push_back(entry);
    if (entry.is_comm) continue;
    for (const Action& action : entry.compute) {
      if (action.kind != ActionKind::kBackwardWeight && action.kind != ActionKind::kBackward) {
        continue;
      }
      auto it = std::find_if(counts.begin(), counts.end(),
                             [&](const auto& c) { return c.first == action.chunk; });
      if (it == counts.end()) it = counts.insert(counts.end(), {action.chunk, 0});
      if (++it->second == num_microbatches) {
        out.push_back(Comm(CommCell::Op::kReduceGrad, action.chunk));
      }
    }
  }
  return out;
}

// What a rank has scheduled so far, as torch's prev_actions: (op, chunk, microbatch) with
// op a compute ActionKind, or kCommBase + a CommCell op.
constexpr int kCommBase = 100;
using Key = std::tuple<int, int, int>;

Key ComputeKey(ActionKind kind, int chunk, int mb) { return {static_cast<int>(kind), chunk, mb}; }
Key CommKey(CommCell::Op op, int chunk, int mb) {
  return {kCommBase + static_cast<int>(op), chunk, mb};
}

class SendRecvLowering {
 public:
  SendRecvLowering(const StepSpec& spec, std::vector<std::deque<Entry>> rows)
      : spec_(spec), rows_(std::move(rows)), out_(rows_.size()), prev_(rows_.size()) {}

  absl::StatusOr<std::vector<std::vector<Entry>>> Run() {
    while (true) {
      bool work_left = false, progress = false;
      for (std::size_t r = 0; r < rows_.size(); ++r) {
        if (rows_[r].empty()) continue;
        work_left = true;
        const Entry& head = rows_[r].front();
        if (!head.is_comm && !std::all_of(head.compute.begin(), head.compute.end(),
                                          [&](const Action& a) { return Ready(a, r); })) {
          continue;
        }
        Schedule(head, r);
        rows_[r].pop_front();
        progress = true;
      }
      if (!work_left) return std::move(out_);
      if (!progress) {
        return absl::InvalidArgumentError(
            "the compute schedule cannot be lowered: every rank waits for an input that no "
            "rank sends (torch: \"Malformed compute schedule, can't schedule sends/recvs\")");
      }
    }
  }

 private:
  int Home(int chunk) const { return spec_.chunk_to_stage[chunk]; }
  bool Has(std::size_t rank, const Key& key) const { return prev_[rank].count(key) > 0; }

  bool Ready(const Action& a, std::size_t rank) const {
    if (a.kind == ActionKind::kForward && a.chunk != 0) {
      return Has(rank, CommKey(CommCell::Op::kRecvF, a.chunk, a.microbatch)) ||
             Has(rank, ComputeKey(ActionKind::kForward, a.chunk - 1, a.microbatch));
    }
    if ((a.kind == ActionKind::kBackwardInput || a.kind == ActionKind::kBackward) &&
        a.chunk != spec_.num_chunks - 1) {
      return Has(rank, CommKey(CommCell::Op::kRecvB, a.chunk, a.microbatch)) ||
             Has(rank, ComputeKey(ActionKind::kBackwardInput, a.chunk + 1, a.microbatch)) ||
             Has(rank, ComputeKey(ActionKind::kBackward, a.chunk + 1, a.microbatch));
    }
    return true;
  }

  void Add(std::size_t rank, const Entry& entry) {
    out_[rank].push_back(entry);
    if (entry.is_comm) {
      prev_[rank].insert(CommKey(entry.comm.op, entry.comm.chunk, entry.comm.microbatch));
    }
  }

  void Schedule(const Entry& head, std::size_t rank) {
    Add(rank, head);
    for (const Action& a : head.compute) {
      prev_[rank].insert(ComputeKey(a.kind, a.chunk, a.microbatch));
      const bool forward = a.kind == ActionKind::kForward;
      const bool backward = a.kind == ActionKind::kBackwardInput || a.kind == ActionKind::kBackward;
      const int peer_chunk = forward ? a.chunk + 1 : a.chunk - 1;
      if (!(forward || backward) || peer_chunk < 0 || peer_chunk >= spec_.num_chunks ||
          Home(peer_chunk) == Home(a.chunk)) {
        continue;
      }
      Add(rank, Comm(forward ? CommCell::Op::kSendF : CommCell::Op::kSendB, a.chunk, a.microbatch));
      Add(Home(peer_chunk),
          Comm(forward ? CommCell::Op::kRecvF : CommCell::Op::kRecvB, peer_chunk, a.microbatch));
    }
  }

  const StepSpec& spec_;
  std::vector<std::deque<Entry>> rows_;
  std::vector<std::vector<Entry>> out_;
  std::vector<std::set<Key>> prev_;
};

}  // namespace

absl::StatusOr<ScheduleTable> LowerToComputeComms(const ScheduleTable& compute_only) {
  ASSIGN_OR_RETURN(const StepSpec spec, SpecFromTable(compute_only));
  std::vector<std::deque<Entry>> rows;
  for (const std::vector<TableCell>& row : compute_only.rows) {
    const std::vector<Entry> lowered = AddReduceGrad(AddUnshardReshard(row), spec.num_microbatches);
    rows.emplace_back(lowered.begin(), lowered.end());
  }
  ASSIGN_OR_RETURN(std::vector<std::vector<Entry>> lowered,
                   SendRecvLowering(spec, std::move(rows)).Run());
  ScheduleTable table;
  table.line_terminator = compute_only.line_terminator;
  table.final_line_terminator = compute_only.final_line_terminator;
  table.rows.resize(lowered.size());
  table.comms.resize(lowered.size());
  for (std::size_t r = 0; r < lowered.size(); ++r) {
    for (const Entry& entry : lowered[r]) {
      if (entry.is_comm) {
        CommCell comm = entry.comm;
        comm.step = static_cast<int>(table.rows[r].size());
        table.comms[r].push_back(comm);
        table.rows[r].emplace_back();
      } else {
        table.rows[r].push_back(entry.compute);
      }
    }
  }
  return table;
}

}  // namespace stagehand::runtime
