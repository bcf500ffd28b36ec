// Summary of a Trace: interval arithmetic per stage and a backward walk for the critical path.
// Not a model of what the step should have been: only what the trace shows.
#include "runtime/trace/summary.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <thread>
#include <tuple>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "runtime/train/timers.h"

namespace stagehand::runtime::trace {
namespace {

using Interval = std::pair<double, double>;

// Sorted, disjoint.
std::vector<Interval> Union(std::vector<Interval> v) {
  std::sort(v.begin(), v.end());
  std::vector<Interval> out;
  for (const Interval& i : v) {
    if (i.second <= i.first) continue;
    if (!out.empty() && i.first <= out.back().second) {
      out.back().second = std::max(out.back().second, i.second);
    } else {
      out.push_back(i);
    }
  }
  return out;
}

double Length(const std::vector<Interval>& v) {
  double total = 0;
  for (const Interval& i : v) total += i.second - i.first;
  return total;
}

// Both sorted and disjoint.
double IntersectionLength(const std::vector<Interval>& a, const std::vector<Interval>& b) {
  double total = 0;
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    const double lo = std::max(a[i].first, b[j].first);
    const double hi = std::min(a[i].second, b[j].second);
    if (hi > lo) total += hi - lo;
    if (a[i].second < b[j].second) {
      ++i;
    } else {
      ++j;
    }
  }
  return total;
}

bool IsWork(const Span& s) { return s.lane == Lane::kCompute && IsCompute(s.kind); }

// (stage, kind, chunk, microbatch) within one step.
using Key = std::tuple<int, int, int, int>;
Key KeyOf(int stage, ActionKind kind, int chunk, int mb) {
  return {stage, static_cast<int>(kind), chunk, mb};
}

// What the walk may step back to from an action: when it was there, the action it leads
// back to, and the receive for an input from another stage.
struct Candidate {
  double at = -1;
  const Span* producer = nullptr;
  const Span* arrival = nullptr;
};

// One step's compute actions by key and by lane, its a2a lanes, its receives, and each
// sub-step's predecessor in its action.
class StepIndex {
 public:
  explicit StepIndex(const std::vector<const Span*>& spans) {
    std::map<Key, std::vector<const Span*>> sub_steps;  // by action, both lanes
    for (const Span* s : spans) {
      const Key key = KeyOf(s->stage, s->kind, s->chunk, s->microbatch);
      if (IsWork(*s)) {
        auto [it, fresh] = compute_.try_emplace(key, s);  // an action's last sub-step
        if (!fresh && s->end_us > it->second->end_us) it->second = s;
        lanes_[s->stage].push_back(s);
        if (last_ == nullptr || s->end_us > last_->end_us) last_ = s;
      } else if (s->lane == Lane::kRecv) {
        recv_[key] = s;
      } else if (s->lane == Lane::kAllToAll && IsCompute(s->kind)) {
        a2a_lanes_[s->stage].push_back(s);
      }
      if (s->sub_step() && IsCompute(s->kind) &&
          (s->lane == Lane::kCompute || s->lane == Lane::kAllToAll)) {
        sub_steps[key].push_back(s);
      }
    }
    for (auto& [stage, lane] : lanes_) std::sort(lane.begin(), lane.end(), ByBegin);
    for (auto& [stage, lane] : a2a_lanes_) std::sort(lane.begin(), lane.end(), ByBegin);
    for (auto& [key, steps] : sub_steps) {
      std::sort(steps.begin(), steps.end(), ByBegin);
      for (size_t i = 1; i < steps.size(); ++i) previous_sub_step_[steps[i]] = steps[i - 1];
    }
  }
  const Span* last() const { return last_; }

  // Where the walk may go back to from `cur`: the previous span on its lane, and what it
  // consumes: the sub-step before it in its action, or (an action, or its first sub-step) the
  // actions whose outputs it consumes.
  std::vector<Candidate> CandidatesOf(const Span& cur, int num_chunks) const {
    std::vector<Candidate> out;
    const auto& lanes = cur.lane == Lane::kAllToAll ? a2a_lanes_ : lanes_;
    const std::vector<const Span*>& lane = lanes.at(cur.stage);
    auto it = std::lower_bound(lane.begin(), lane.end(), &cur, ByBegin);
    if (it != lane.begin() && *std::prev(it) != &cur) {
      out.push_back(Candidate{(*std::prev(it))->end_us, *std::prev(it), nullptr});
    }
    if (auto p = previous_sub_step_.find(&cur); p != previous_sub_step_.end()) {
      out.push_back(Candidate{p->second->end_us, p->second, nullptr});
      return out;
    }
    switch (cur.kind) {
      case ActionKind::kForward:
        if (cur.chunk > 0) out.push_back(Input(cur, /*forward=*/true));
        break;
      case ActionKind::kBackwardInput:
      case ActionKind::kBackward:
        out.push_back(Local(cur, ActionKind::kForward));
        if (cur.chunk + 1 < num_chunks) out.push_back(Input(cur, /*forward=*/false));
        break;
      case ActionKind::kBackwardWeight:
        out.push_back(Local(cur, ActionKind::kBackwardInput));
        break;
      default:
        break;
    }
    return out;
  }

 private:
  static bool ByBegin(const Span* a, const Span* b) { return a->begin_us < b->begin_us; }
  static const Span* Find(const absl::flat_hash_map<Key, const Span*>& m, int stage,
                          ActionKind kind, int chunk, int mb) {
    auto it = m.find(KeyOf(stage, kind, chunk, mb));
    return it == m.end() ? nullptr : it->second;
  }
  // An input of `s` from its neighbour chunk, produced on this stage or received.
  Candidate Input(const Span& s, bool forward) const {
    Candidate c;
    const int from_chunk = forward ? s.chunk - 1 : s.chunk + 1;
    const std::vector<ActionKind> kinds =
        forward ? std::vector<ActionKind>{ActionKind::kForward}
                : std::vector<ActionKind>{ActionKind::kBackwardInput, ActionKind::kBackward};
    const ActionKind recv_kind = forward ? ActionKind::kRecvForward : ActionKind::kRecvBackward;
    if (const Span* r = Find(recv_, s.stage, recv_kind, s.chunk, s.microbatch)) {
      c.at = r->end_us;
      c.arrival = r;
      for (ActionKind k : kinds) {
        if (const Span* p = Find(compute_, r->peer, k, from_chunk, s.microbatch)) c.producer = p;
      }
      return c;
    }
    for (ActionKind k : kinds) {
      if (const Span* p = Find(compute_, s.stage, k, from_chunk, s.microbatch)) {
        c.at = p->end_us;
        c.producer = p;
      }
    }
    return c;
  }
  Candidate Local(const Span& s, ActionKind kind) const {
    Candidate c;
    if (const Span* p = Find(compute_, s.stage, kind, s.chunk, s.microbatch)) {
      c.at = p->end_us;
      c.producer = p;
    }
    return c;
  }

  absl::flat_hash_map<Key, const Span*> compute_, recv_;
  std::map<int, std::vector<const Span*>> lanes_;      // stage -> F/I/W/B by begin
  std::map<int, std::vector<const Span*>> a2a_lanes_;  // stage -> dispatch / combine by begin
  absl::flat_hash_map<const Span*, const Span*> previous_sub_step_;
  const Span* last_ = nullptr;
};

// The link of action `cur`, waiting since `since`.
CriticalLink ActionLink(const Span& cur, double since) {
  CriticalLink link;
  link.stage = cur.stage;
  link.kind = cur.kind;
  link.chunk = cur.chunk;
  link.microbatch = cur.microbatch;
  link.begin_us = cur.begin_us;
  link.end_us = cur.end_us;
  link.wait_before_us = std::max(0.0, cur.begin_us - since);
  link.all_to_all = cur.lane == Lane::kAllToAll;
  link.layer = cur.layer;
  link.part = cur.part;
  return link;
}

// The transfer link of a received input: from its producer's end to its arrival.
CriticalLink TransferLink(const Candidate& c) {
  CriticalLink t;
  t.transfer = true;
  t.stage = c.arrival->peer;
  t.to_stage = c.arrival->stage;
  t.kind = c.arrival->kind == ActionKind::kRecvForward ? ActionKind::kSendForward
                                                       : ActionKind::kSendBackward;
  t.chunk = c.arrival->chunk;
  t.microbatch = c.arrival->microbatch;
  t.begin_us = c.producer != nullptr ? c.producer->end_us : c.arrival->begin_us;
  t.end_us = c.arrival->end_us;
  return t;
}

// The backward walk: from the last F/I/W/B of the step, repeatedly step to whichever of
// (the previous action on the same lane, the action's inputs) was there last.
CriticalPath FindCriticalPath(const std::vector<const Span*>& spans, int64_t step,
                              double step_begin, int num_chunks) {
  CriticalPath path;
  path.step = step;
  const StepIndex index(spans);
  const Span* last = index.last();
  if (last == nullptr) return path;
  std::vector<CriticalLink> reversed;
  const Span* cur = last;
  for (size_t guard = 0; cur != nullptr && guard <= spans.size(); ++guard) {
    const std::vector<Candidate> candidates = index.CandidatesOf(*cur, num_chunks);
    const Candidate* best = nullptr;
    for (const Candidate& c : candidates) {
      if (c.at < 0 || c.at > cur->begin_us + 1e-6) continue;
      if (best == nullptr || c.at > best->at) best = &c;  // ties: the lane predecessor
    }
    if (best == nullptr) {
      reversed.push_back(ActionLink(*cur, step_begin));
      break;
    }
    reversed.push_back(ActionLink(*cur, best->at));
    if (best->arrival != nullptr) reversed.push_back(TransferLink(*best));
    cur = best->producer;
  }
  path.links.assign(reversed.rbegin(), reversed.rend());
  path.length_us = last->end_us - step_begin;
  for (const CriticalLink& l : path.links) {
    (l.transfer     ? path.transfer_us
     : l.all_to_all ? path.a2a_us
                    : path.compute_us) += l.end_us - l.begin_us;
    path.wait_us += l.wait_before_us;
  }
  return path;
}

// The action of a non-transfer link: (stage, kind, chunk, microbatch).
Key ActionOf(const CriticalLink& l) { return KeyOf(l.stage, l.kind, l.chunk, l.microbatch); }

// Distinct actions among the non-transfer links (an action's sub-steps count once).
int CountActions(const std::vector<CriticalLink>& links) {
  std::set<Key> actions;
  for (const CriticalLink& l : links) {
    if (!l.transfer) actions.insert(ActionOf(l));
  }
  return static_cast<int>(actions.size());
}

std::string ShortAction(const CriticalLink& l, bool show_chunk) {
  std::string text = absl::StrCat(ActionKindName(l.kind), l.microbatch);
  if (show_chunk) absl::StrAppend(&text, "/c", l.chunk);
  return text;
}

}  // namespace

// Data parallelism: REDUCE_GRAD time, and the part of it during which some stage of the same
// step still ran a backward action (I, W or B): hidden under backward, off the step's end.
void SummarizeGradReduction(const Trace& trace, TraceSummary* out) {
  std::map<int64_t, std::vector<Interval>> backward, reduce;
  for (const Span& s : trace.spans) {
    if (s.lane == Lane::kCompute &&
        (s.kind == ActionKind::kBackwardInput || s.kind == ActionKind::kBackwardWeight ||
         s.kind == ActionKind::kBackward)) {
      backward[s.step].push_back({s.begin_us, s.end_us});
    } else if (s.kind == ActionKind::kReduceGrad) {
      reduce[s.step].push_back({s.begin_us, s.end_us});
    }
  }
  for (auto& [step, spans] : reduce) {
    const std::vector<Interval> under = Union(backward[step]);
    for (const Interval& r : spans) {
      out->grad_reduction_us += r.second - r.first;
      out->hidden_grad_reduction_us += IntersectionLength(under, {r});
    }
  }
}

namespace {

// A step's length (its step span, else its spans' extent), its pipeline window (first compute
// to last) and each stage's compute time.
struct StepFigures {
  double length = 0, window = 0, window_begin = 0, begin = 0;
  std::vector<double> compute;  // (P)
  int microbatches = 0;         // distinct microbatches of its F actions: the step's M
};

// The figures of every step with compute, by step.
std::map<int64_t, StepFigures> FigureSteps(
    const Trace& trace, const std::map<int64_t, std::vector<const Span*>>& by_step) {
  const int P = trace.num_stages;
  std::map<int64_t, StepSpan> steps;
  for (const StepSpan& st : trace.steps) steps[st.step] = st;
  std::map<int64_t, StepFigures> figures;
  for (const auto& [step, spans] : by_step) {
    StepFigures f;
    f.compute.assign(P, 0.0);
    double lo = INFINITY, hi = -INFINITY, all_lo = INFINITY, all_hi = -INFINITY;
    std::set<int> microbatches;
    for (const Span* s : spans) {
      all_lo = std::min(all_lo, s->begin_us);
      all_hi = std::max(all_hi, s->end_us);
      if (s->lane == Lane::kCompute && s->kind == ActionKind::kForward) {
        microbatches.insert(s->microbatch);
      }
      if (!IsWork(*s)) continue;
      lo = std::min(lo, s->begin_us);
      hi = std::max(hi, s->end_us);
      if (s->stage >= 0 && s->stage < P) f.compute[s->stage] += s->duration_us();
    }
    if (lo > hi) continue;  // no compute in this step
    auto it = steps.find(step);
    f.begin = it != steps.end() ? it->second.begin_us : all_lo;
    f.length = it != steps.end() ? it->second.end_us - it->second.begin_us : all_hi - all_lo;
    f.window = hi - lo;
    f.window_begin = lo;
    f.microbatches = static_cast<int>(microbatches.size());
    figures[step] = f;
  }
  return figures;
}

// Per stage: busy and bubble fractions, waits, transfers hidden and exposed, peak memory.
void SummarizeStages(const Trace& trace, const std::map<int64_t, StepFigures>& figures,
                     double total_length, double total_window, TraceSummary& out) {
  const int P = trace.num_stages;
  std::vector<std::vector<Interval>> compute_iv(P), transfer_iv(P), wait_iv(P), a2a_iv(P);
  out.stages.resize(P);
  for (int s = 0; s < P; ++s) out.stages[s].stage = s;
  for (const Span& s : trace.spans) {
    if (s.stage < 0 || s.stage >= P || !figures.count(s.step)) continue;
    StageSummary& st = out.stages[s.stage];
    if (s.lane == Lane::kCompute) {
      compute_iv[s.stage].push_back({s.begin_us, s.end_us});
      if (IsCompute(s.kind)) {
        st.compute_us += s.duration_us();
        if (s.wait_us > 0) wait_iv[s.stage].push_back({s.begin_us - s.wait_us, s.begin_us});
      }
    } else if (s.lane == Lane::kAllToAll) {
      a2a_iv[s.stage].push_back({s.begin_us, s.end_us});
      if (s.wait_us > 0) wait_iv[s.stage].push_back({s.begin_us - s.wait_us, s.begin_us});
    } else if (s.kind != ActionKind::kReduceGrad) {  // REDUCE_GRAD: SummarizeGradReduction
      transfer_iv[s.stage].push_back({s.begin_us, s.end_us});
    }
  }
  for (const MemorySample& m : trace.memory) {
    if (m.stage < 0 || m.stage >= P) continue;
    out.stages[m.stage].peak_activations =
        std::max(out.stages[m.stage].peak_activations, m.activations);
    out.stages[m.stage].peak_activation_bytes =
        std::max(out.stages[m.stage].peak_activation_bytes, m.bytes);
  }
  double bubble_sum = 0;
  for (int s = 0; s < P; ++s) {
    StageSummary& st = out.stages[s];
    st.busy_fraction = total_length > 0 ? st.compute_us / total_length : 0;
    st.bubble_fraction = total_window > 0 ? 1.0 - st.compute_us / total_window : 0;
    // Time in which some action of the stage was ready and waiting: overlapping waits of
    // several ready actions count once.
    st.wait_us = Length(Union(wait_iv[s]));
    const std::vector<Interval> compute = Union(compute_iv[s]);
    const std::vector<Interval> transfer = Union(transfer_iv[s]);
    st.transfer_us = Length(transfer);
    st.hidden_transfer_us = IntersectionLength(compute, transfer);
    st.exposed_transfer_us = st.transfer_us - st.hidden_transfer_us;
    st.overlap_fraction = st.transfer_us > 0 ? st.hidden_transfer_us / st.transfer_us : 0;
    const std::vector<Interval> a2a = Union(a2a_iv[s]);
    st.a2a_us = Length(a2a);
    st.hidden_a2a_us = IntersectionLength(compute, a2a);
    out.a2a_us += st.a2a_us;
    out.hidden_a2a_us += st.hidden_a2a_us;
    bubble_sum += st.bubble_fraction;
    out.exposed_transfer_us += st.exposed_transfer_us;
    out.hidden_transfer_us += st.hidden_transfer_us;
  }
  out.bubble_fraction = bubble_sum / P;
  const double transfer = out.exposed_transfer_us + out.hidden_transfer_us;
  out.overlap_fraction = transfer > 0 ? out.hidden_transfer_us / transfer : 0;
}

}  // namespace

std::vector<double> LaneGaps(const Trace& trace) {
  // Whole compute actions by (stage, step), in begin order.
  std::map<std::pair<int, int64_t>, std::vector<const Span*>> lanes;
  for (const Span& s : trace.spans) {
    if (IsWork(s) && !s.sub_step()) lanes[{s.stage, s.step}].push_back(&s);
  }
  std::vector<double> gaps;
  for (auto& [key, spans] : lanes) {
    std::sort(spans.begin(), spans.end(),
              [](const Span* a, const Span* b) { return a->begin_us < b->begin_us; });
    for (size_t i = 1; i < spans.size(); ++i) {
      const Span& before = *spans[i - 1];
      const Span& next = *spans[i];
      if (next.wait_us < 0) continue;                              // ready time unknown
      if (next.begin_us - next.wait_us > before.end_us) continue;  // it waited for an input
      gaps.push_back(std::max(0.0, next.begin_us - before.end_us));
    }
  }
  return gaps;
}

absl::StatusOr<TraceSummary> Summarize(const Trace& trace, const SummaryOptions& options) {
  TraceSummary out;
  out.num_stages = trace.num_stages;
  out.num_chunks = trace.num_chunks;
  out.num_microbatches = trace.num_microbatches;
  out.virtual_time = trace.virtual_time;
  const int P = trace.num_stages;
  if (P <= 0) return absl::InvalidArgumentError("the trace has no stages");

  // Steps: their spans, and the spans that fall in each.
  std::map<int64_t, std::vector<const Span*>> by_step;
  for (const Span& s : trace.spans) by_step[s.step].push_back(&s);
  const std::map<int64_t, StepFigures> figures = FigureSteps(trace, by_step);
  if (figures.empty()) return absl::InvalidArgumentError("the trace has no compute actions");
  out.num_steps = static_cast<int>(figures.size());

  double total_length = 0, total_window = 0;
  for (const auto& [step, f] : figures) {
    total_length += f.length;
    total_window += f.window;
  }
  out.step_time_us = total_length / out.num_steps;
  out.pipeline_window_us = total_window / out.num_steps;
  for (const auto& [step, f] : figures) {
    out.step_times.push_back(StepTime{step, f.length, f.window, false, f.microbatches});
  }
  out.step_statistics = ComputeStepStatistics(&out.step_times, options.warmup_steps);
  const int cores = options.cpu_cores > 0 ? options.cpu_cores
                                          : static_cast<int>(std::thread::hardware_concurrency());
  out.fewer_cores_than_stages =
      !trace.virtual_time && trace.process != "simulator" && cores > 0 && cores < P;

  SummarizeStages(trace, figures, total_length, total_window, out);

  // The critical path of one step.
  int64_t step = options.critical_path_step;
  if (step < 0) step = figures.rbegin()->first;
  auto f = figures.find(step);
  if (f == figures.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("step ", step, " is not in the trace (it has steps ", figures.begin()->first,
                     " to ", figures.rbegin()->first, ")"));
  }
  int num_chunks = trace.num_chunks;
  for (const Span& s : trace.spans) {
    if (IsWork(s)) num_chunks = std::max(num_chunks, s.chunk + 1);
  }
  out.critical_path = FindCriticalPath(by_step[step], step, f->second.begin, num_chunks);
  SummarizeGradReduction(trace, &out);
  const LaneGapMedian gaps = MedianLaneGap(trace);
  out.lane_gaps = gaps.pairs;
  out.lane_gap_median_us = gaps.median_us;
  return out;
}

LaneGapMedian MedianLaneGap(const Trace& trace) {
  std::vector<double> gaps = LaneGaps(trace);
  LaneGapMedian out;
  out.pairs = static_cast<int>(gaps.size());
  if (!gaps.empty()) {
    std::nth_element(gaps.begin(), gaps.begin() + gaps.size() / 2, gaps.end());
    out.median_us = gaps[gaps.size() / 2];
  }
  return out;
}

StepStatistics ComputeStepStatistics(std::vector<StepTime>* steps, int warmup_steps) {
  StepStatistics stats;
  const int total = static_cast<int>(steps->size());
  stats.warmup_steps = std::clamp(warmup_steps, 0, std::max(total - 1, 0));
  std::vector<double> lengths;
  for (int i = 0; i < total; ++i) {
    (*steps)[i].warmup = i < stats.warmup_steps;
    if (!(*steps)[i].warmup) lengths.push_back((*steps)[i].length_us);
  }
  stats.num_steps = static_cast<int>(lengths.size());
  if (lengths.empty()) return stats;
  std::sort(lengths.begin(), lengths.end());
  const size_t n = lengths.size();
  stats.median_us = n % 2 == 1 ? lengths[n / 2] : (lengths[n / 2 - 1] + lengths[n / 2]) / 2;
  stats.min_us = lengths.front();
  stats.max_us = lengths.back();
  return stats;
}

std::pair<int, int> MicrobatchRange(const TraceSummary& s) {
  int fewest = 0, most = 0;
  for (const StepTime& st : s.step_times) {
    fewest = fewest == 0 ? st.microbatches : std::min(fewest, st.microbatches);
    most = std::max(most, st.microbatches);
  }
  return {fewest, most};
}

std::string FormatStepTable(const TraceSummary& s) {
  const char* unit = s.virtual_time ? "units" : "ms";
  std::string out = absl::StrFormat("%-8s %12s %12s\n", "step", absl::StrCat("time ", unit),
                                    absl::StrCat("window ", unit));
  const size_t n = s.step_times.size();
  const auto [fewest, most] = MicrobatchRange(s);
  const bool ramp = fewest != most;  // a batch-size ramp-up: each step's M is shown
  for (size_t i = 0; i < n; ++i) {
    if (n > 24 && i >= 10 && i + 10 < n) {
      if (i == 10) absl::StrAppendFormat(&out, "... (%d steps)\n", static_cast<int>(n - 20));
      continue;
    }
    const StepTime& st = s.step_times[i];
    absl::StrAppendFormat(&out, "%-8d %12.3f %12.3f%s%s\n", st.step, st.length_us / 1e3,
                          st.pipeline_window_us / 1e3,
                          ramp ? absl::StrCat("  M=", st.microbatches) : "",
                          st.warmup ? "  (warm-up, excluded)" : "");
  }
  const StepStatistics& st = s.step_statistics;
  absl::StrAppendFormat(
      &out, "median step time %.3f %s, spread %.3f %s (min %.3f, max %.3f) over %d step%s",
      st.median_us / 1e3, unit, (st.max_us - st.min_us) / 1e3, unit, st.min_us / 1e3,
      st.max_us / 1e3, st.num_steps, st.num_steps == 1 ? "" : "s");
  if (st.warmup_steps > 0) {
    absl::StrAppendFormat(&out, ", excluding %d warm-up step%s", st.warmup_steps,
                          st.warmup_steps == 1 ? "" : "s");
  }
  absl::StrAppend(&out, "\n");
  return out;
}

namespace {

double PeakMemory(const TraceSummary& s, bool bytes) {
  double peak = 0;
  for (const StageSummary& st : s.stages) {
    peak = std::max(peak, bytes ? static_cast<double>(st.peak_activation_bytes)
                                : static_cast<double>(st.peak_activations));
  }
  return peak;
}

}  // namespace

std::string FormatComparison(const TraceSummary& a, const std::string& a_name,
                             const TraceSummary& b, const std::string& b_name) {
  const char* unit = a.virtual_time ? "units" : "ms";
  const double steps_a = std::max(1, a.num_steps), steps_b = std::max(1, b.num_steps);
  std::string out =
      absl::StrFormat("%-28s %18s %18s\n", "", a_name.substr(0, 18), b_name.substr(0, 18));
  // `decimals` rather than a format string: absl needs formats known at compile time.
  const auto row = [&](const std::string& name, double x, double y, int decimals) {
    absl::StrAppendFormat(&out, "%-28s %18s %18s\n", name, absl::StrFormat("%.*f", decimals, x),
                          absl::StrFormat("%.*f", decimals, y));
  };
  const StepStatistics& sa = a.step_statistics;
  const StepStatistics& sb = b.step_statistics;
  row(absl::StrCat("median step time ", unit), sa.median_us / 1e3, sb.median_us / 1e3, 3);
  row(absl::StrCat("spread (max - min) ", unit), (sa.max_us - sa.min_us) / 1e3,
      (sb.max_us - sb.min_us) / 1e3, 3);
  row("steps counted", sa.num_steps, sb.num_steps, 0);
  row("bubble", a.bubble_fraction, b.bubble_fraction, 4);
  row(absl::StrCat("exposed transfer ", unit, "/step"), a.exposed_transfer_us / steps_a / 1e3,
      b.exposed_transfer_us / steps_b / 1e3, 3);
  if (a.a2a_us > 0 || b.a2a_us > 0) {
    row(absl::StrCat("all-to-all ", unit, "/step"), a.a2a_us / steps_a / 1e3,
        b.a2a_us / steps_b / 1e3, 3);
    row("all-to-all hidden %", 100.0 * a.a2a_hidden_fraction(), 100.0 * b.a2a_hidden_fraction(), 1);
  }
  row("peak activations (stage)", PeakMemory(a, false), PeakMemory(b, false), 0);
  if (PeakMemory(a, true) > 0 || PeakMemory(b, true) > 0) {
    row("peak activation MiB (stage)", PeakMemory(a, true) / 1048576.0,
        PeakMemory(b, true) / 1048576.0, 2);
  }
  if (sa.median_us > 0) {
    absl::StrAppendFormat(&out, "%s / %s median step time: %.3f\n", b_name, a_name,
                          sb.median_us / sa.median_us);
  }
  if (sa.num_steps < 3 || sb.num_steps < 3) {
    absl::StrAppend(&out,
                    "too few steps to tell the difference from run-to-run noise (want >= 3 "
                    "after warm-up in each)\n");
  } else if (sa.max_us < sb.min_us || sb.max_us < sa.min_us) {
    absl::StrAppendFormat(&out,
                          "the difference exceeds run-to-run noise: the step-time ranges "
                          "do not overlap (%s is faster)\n",
                          sa.median_us < sb.median_us ? a_name : b_name);
  } else {
    absl::StrAppend(&out,
                    "the difference is within run-to-run noise: the step-time ranges "
                    "overlap\n");
  }
  return out;
}

namespace {

// The critical path's totals, then its runs of actions on one stage (a line each) and the
// transfers between them.
std::string FormatCriticalPath(const TraceSummary& s, const char* unit) {
  auto t = [](double us) { return absl::StrFormat("%.3f", us / 1e3); };
  std::string out;
  const CriticalPath& cp = s.critical_path;
  absl::StrAppendFormat(
      &out,
      "critical path of step %d: %s %s from step begin to last compute = compute %s + "
      "transfers %s + %swaits %s; %d actions, %d transfers\n",
      cp.step, t(cp.length_us), unit, t(cp.compute_us), t(cp.transfer_us),
      cp.a2a_us > 0 ? absl::StrCat("all-to-all ", t(cp.a2a_us), " + ") : "", t(cp.wait_us),
      CountActions(cp.links),
      static_cast<int>(std::count_if(cp.links.begin(), cp.links.end(),
                                     [](const CriticalLink& l) { return l.transfer; })));
  // Runs of actions on one stage, one line each; transfers between them.
  const bool show_chunk = s.num_chunks != s.num_stages;
  std::vector<std::string> lines;
  for (size_t i = 0; i < cp.links.size();) {
    const CriticalLink& l = cp.links[i];
    if (l.transfer) {
      lines.push_back(
          absl::StrFormat("  s%d -> s%d  %s mb%d  %s %s", l.stage, l.to_stage,
                          l.kind == ActionKind::kSendForward ? "activation" : "gradient",
                          l.microbatch, t(l.end_us - l.begin_us), unit));
      ++i;
      continue;
    }
    size_t j = i;
    std::vector<std::string> names;
    double busy_us = 0, wait_us = 0;
    std::set<Key> seen;  // sub-steps of one action (interleaved with another's): named once
    while (j < cp.links.size() && !cp.links[j].transfer && cp.links[j].stage == l.stage) {
      if (seen.insert(ActionOf(cp.links[j])).second) {
        names.push_back(ShortAction(cp.links[j], show_chunk));
      }
      busy_us += cp.links[j].end_us - cp.links[j].begin_us;
      wait_us += cp.links[j].wait_before_us;
      ++j;
    }
    if (names.size() > 8) {
      const size_t n = names.size();
      names = {names[0],     names[1],     names[2],    absl::StrCat("... ", n - 6, " more ..."),
               names[n - 3], names[n - 2], names[n - 1]};
    }
    const int actions = CountActions({cp.links.begin() + i, cp.links.begin() + j});
    lines.push_back(absl::StrFormat("  s%-3d %s  (%d action%s, %s %s, waits %s %s)", l.stage,
                                    absl::StrJoin(names, " "), actions, actions == 1 ? "" : "s",
                                    t(busy_us), unit, t(wait_us), unit));
    i = j;
  }
  if (lines.size() > 40) {
    const size_t n = lines.size();
    std::vector<std::string> kept(lines.begin(), lines.begin() + 20);
    kept.push_back(absl::StrCat("  ... ", n - 40, " more lines ..."));
    kept.insert(kept.end(), lines.end() - 20, lines.end());
    lines = std::move(kept);
  }
  for (const std::string& line : lines) absl::StrAppend(&out, line, "\n");
  return out;
}

}  // namespace

absl::StatusOr<AllToAllOverlap> MeasureAllToAllOverlap(const Trace& trace) {
  SummaryOptions options;
  options.warmup_steps = 0;  // already out
  absl::StatusOr<TraceSummary> summary = Summarize(trace, options);
  if (!summary.ok()) return summary.status();
  AllToAllOverlap out;
  out.step_ms = summary->step_statistics.median_us / 1e3;
  out.a2a_ms_per_step = summary->a2a_us / std::max(1, summary->num_steps) / 1e3;
  out.hidden_fraction = summary->a2a_hidden_fraction();
  out.table = FormatAllToAll(*summary);
  std::vector<double> experts;
  for (const Span& s : trace.spans) {
    if (s.lane == Lane::kCompute && s.sub_step() && s.kind == ActionKind::kForward &&
        s.part == SubStepKind::kExperts) {
      experts.push_back(s.duration_us());
    }
  }
  if (!experts.empty()) {
    std::nth_element(experts.begin(), experts.begin() + experts.size() / 2, experts.end());
    out.experts_us = experts[experts.size() / 2];
  }
  return out;
}

std::string FormatAllToAll(const TraceSummary& s) {
  if (s.a2a_us <= 0) return "";
  const char* unit = s.virtual_time ? "units" : "ms";
  const double steps = std::max(1, s.num_steps);
  auto t = [](double us) { return absl::StrFormat("%.3f", us / 1e3); };
  std::string out = absl::StrFormat(
      "all-to-all (MoE dispatch / combine) %s %s per step summed over stages, %s %s hidden under "
      "the same stage's compute: %.1f%% hidden\n",
      t(s.a2a_us / steps), unit, t(s.hidden_a2a_us / steps), unit, 100.0 * s.a2a_hidden_fraction());
  absl::StrAppendFormat(&out, "%-6s %11s %11s %8s\n", "stage", absl::StrCat("a2a ", unit),
                        "exposed", "hidden");
  for (const StageSummary& st : s.stages) {
    absl::StrAppendFormat(&out, "s%-5d %11s %11s %7.1f%%\n", st.stage, t(st.a2a_us / steps),
                          t((st.a2a_us - st.hidden_a2a_us) / steps),
                          st.a2a_us > 0 ? 100.0 * st.hidden_a2a_us / st.a2a_us : 0.0);
  }
  return out;
}

std::string FormatSummary(const TraceSummary& s) {
  // Times print in ms (virtual time: cost-model units).
  const char* unit = s.virtual_time ? "units" : "ms";
  auto t = [](double us) { return absl::StrFormat("%.3f", us / 1e3); };
  const double steps = std::max(1, s.num_steps);
  const auto [fewest, most] = MicrobatchRange(s);
  const std::string microbatches =
      fewest != most
          ? absl::StrCat(fewest, "..", most, " microbatches per step (a batch-size ramp-up)")
          : absl::StrCat(s.num_microbatches, " microbatches");
  std::string out =
      absl::StrFormat("trace: %d stages, %d chunks, %s, %d step%s%s\n", s.num_stages, s.num_chunks,
                      microbatches, s.num_steps, s.num_steps == 1 ? "" : "s",
                      s.virtual_time ? " (virtual time: cost-model units)" : "");
  absl::StrAppend(&out, FormatStepTable(s));
  absl::StrAppendFormat(
      &out,
      "step time %s %s (mean of all steps), pipeline window %s %s, bubble %.4f, overlap %.4f\n",
      t(s.step_time_us), unit, t(s.pipeline_window_us), unit, s.bubble_fraction,
      s.overlap_fraction);
  if (s.fewer_cores_than_stages) {
    absl::StrAppend(&out,
                    "note: this machine has fewer cores than stages, so stages' busy "
                    "fractions overlap in time (they shared cores)\n");
  }
  absl::StrAppendFormat(&out, "%-6s %6s %7s %11s %11s %11s %8s  %s\n", "stage", "busy", "bubble",
                        "waits", "transfer", "exposed", "overlap", "peak memory");
  absl::StrAppendFormat(&out, "%-6s %6s %7s %35s\n", "", "", "", absl::StrCat(unit, " per step"));
  std::vector<std::string> busy;
  for (const StageSummary& st : s.stages) {
    std::string memory = absl::StrCat(st.peak_activations, " activations");
    if (st.peak_activation_bytes > 0) {
      absl::StrAppendFormat(&memory, ", %.2f MiB", st.peak_activation_bytes / 1048576.0);
    }
    absl::StrAppendFormat(&out, "s%-5d %6.3f %7.4f %11s %11s %11s %8.4f  %s\n", st.stage,
                          st.busy_fraction, st.bubble_fraction, t(st.wait_us / steps),
                          t(st.transfer_us / steps), t(st.exposed_transfer_us / steps),
                          st.overlap_fraction, memory);
    busy.push_back(absl::StrFormat("s%d %.2f", st.stage, st.busy_fraction));
  }
  absl::StrAppendFormat(
      &out,
      "exposed transfer %s %s per step, hidden under compute %s %s per step (summed over stages)\n",
      t(s.exposed_transfer_us / steps), unit, t(s.hidden_transfer_us / steps), unit);
  absl::StrAppend(&out, "busy ", absl::StrJoin(busy, " "), "\n");
  absl::StrAppend(&out, FormatAllToAll(s));
  if (s.grad_reduction_us > 0) {
    absl::StrAppendFormat(&out,
                          "gradient reduction %s %s per step (summed over stages), %.1f%% hidden "
                          "under backward\n",
                          t(s.grad_reduction_us / steps), unit,
                          100.0 * s.hidden_grad_reduction_us / s.grad_reduction_us);
  }

  if (s.lane_gaps > 0 && !s.virtual_time) {
    absl::StrAppendFormat(&out,
                          "lane gap: median %.1f us between an action and the next, already ready, "
                          "on its stage's lane (%d pairs)\n",
                          s.lane_gap_median_us, s.lane_gaps);
  }
  absl::StrAppend(&out, FormatCriticalPath(s, unit));
  return out;
}

// --- The compute phases of --log_timers.

namespace {

// Each stage's transfers exposed (see StagePhaseTimes), added to `out`.
void AddTransfersExposed(const Trace& trace, std::vector<StagePhaseTimes>* out) {
  std::map<int64_t, double> step_begin;
  for (const StepSpan& s : trace.steps) step_begin[s.step] = s.begin_us;
  // Receives by (stage, step, gradient, chunk, microbatch); compute spans by (stage, step).
  std::map<std::tuple<int, int64_t, bool, int, int>, std::vector<const Span*>> receives;
  std::map<std::pair<int, int64_t>, std::vector<const Span*>> computes;
  for (const Span& s : trace.spans) {
    if (s.stage < 0 || s.stage >= static_cast<int>(out->size())) continue;
    if (s.lane == Lane::kRecv) {
      receives[{s.stage, s.step, s.kind == ActionKind::kRecvBackward, s.chunk, s.microbatch}]
          .push_back(&s);
    } else if (s.lane == Lane::kCompute) {
      computes[{s.stage, s.step}].push_back(&s);
    }
  }
  for (auto& [key, spans] : receives) {
    std::sort(spans.begin(), spans.end(),
              [](const Span* a, const Span* b) { return a->end_us < b->end_us; });
  }
  for (auto& [key, spans] : computes) {
    std::sort(spans.begin(), spans.end(),
              [](const Span* a, const Span* b) { return a->begin_us < b->begin_us; });
    auto begin = step_begin.find(key.second);
    double idle_begin =
        begin != step_begin.end() ? begin->second : -std::numeric_limits<double>::infinity();
    for (const Span* x : spans) {
      const bool has_input = x->kind == ActionKind::kForward ||
                             x->kind == ActionKind::kBackwardInput ||
                             x->kind == ActionKind::kBackward;
      auto it = receives.find(
          {x->stage, x->step, x->kind != ActionKind::kForward, x->chunk, x->microbatch});
      if (has_input && it != receives.end()) {
        // The latest arrival before the action began (a rerun receives its inputs again).
        auto after =
            std::upper_bound(it->second.begin(), it->second.end(), x->begin_us,
                             [](double begin, const Span* r) { return begin < r->end_us; });
        if (after != it->second.begin()) {
          const Span* input = *std::prev(after);
          (*out)[x->stage].transfers_exposed_us +=
              ExposedTransferWait(idle_begin, x->begin_us, input->begin_us, input->end_us);
        }
      }
      idle_begin = std::max(idle_begin, x->end_us);
    }
  }
}

}  // namespace

std::vector<StagePhaseTimes> PhaseTimesOf(const Trace& trace) {
  std::vector<StagePhaseTimes> out(std::max(trace.num_stages, 0));
  for (size_t s = 0; s < out.size(); ++s) out[s].stage = static_cast<int>(s);
  for (const Span& span : trace.spans) {
    if (span.lane != Lane::kCompute || span.stage < 0 || span.stage >= static_cast<int>(out.size()))
      continue;
    StagePhaseTimes& t = out[span.stage];
    switch (span.kind) {
      case ActionKind::kForward:
        t.forward_us += span.duration_us();
        break;
      case ActionKind::kBackwardInput:
      case ActionKind::kBackward:
        t.backward_input_us += span.duration_us();
        break;
      case ActionKind::kBackwardWeight:
        t.backward_weight_us += span.duration_us();
        break;
      case ActionKind::kOptimizer:
        t.optimizer_us += span.duration_us();
        break;
      default:
        break;
    }
  }
  AddTransfersExposed(trace, &out);
  return out;
}

std::string FormatPhaseTimes(const std::vector<StagePhaseTimes>& times) {
  std::string out = "phase times (ms, summed over stages; min, max per stage), as --log_timers:\n";
  const std::pair<const char*, double StagePhaseTimes::*> phases[] = {
      {"forward", &StagePhaseTimes::forward_us},
      {"backward-input", &StagePhaseTimes::backward_input_us},
      {"backward-weight", &StagePhaseTimes::backward_weight_us},
      {"transfers exposed", &StagePhaseTimes::transfers_exposed_us},
      {"optimizer", &StagePhaseTimes::optimizer_us}};
  for (const auto& [name, field] : phases) {
    double total = 0, low = times.empty() ? 0 : times[0].*field, high = low;
    for (const StagePhaseTimes& t : times) {
      total += t.*field;
      low = std::min(low, t.*field);
      high = std::max(high, t.*field);
    }
    absl::StrAppendFormat(&out, "  %-18s %10.2f (%.2f, %.2f)\n", name, total / 1e3, low / 1e3,
                          high / 1e3);
  }
  return out;
}

}  // namespace stagehand::runtime::trace
