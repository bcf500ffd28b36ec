// Trace helpers: lane names, span labels, flow ids and the ready-to-start waits.
// Not an analysis of the timeline: that is summary.cc.
#include "runtime/trace/trace.h"

#include <algorithm>
#include <map>
#include <tuple>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"

namespace stagehand::runtime::trace {
namespace {

// (step, stage, kind, chunk, microbatch)
using Key = std::tuple<int64_t, int, int, int, int>;

Key MakeKey(int64_t step, int stage, ActionKind kind, int chunk, int microbatch) {
  return {step, stage, static_cast<int>(kind), chunk, microbatch};
}

}  // namespace

absl::string_view LaneName(Lane lane) {
  switch (lane) {
    case Lane::kCompute:
      return "compute";
    case Lane::kSend:
      return "send";
    case Lane::kRecv:
      return "recv";
    case Lane::kAllToAll:
      return "a2a";
  }
  return "?";
}

bool ParseLane(absl::string_view name, Lane* lane) {
  for (Lane l : {Lane::kCompute, Lane::kSend, Lane::kRecv, Lane::kAllToAll}) {
    if (LaneName(l) == name) {
      *lane = l;
      return true;
    }
  }
  return false;
}

std::string SpanLabel(const Span& span) {
  if (span.kind == ActionKind::kReduceGrad) {  // on the communication lane, per bucket
    return absl::StrCat("REDUCE_GRAD c", span.chunk, " bucket ", span.microbatch);
  }
  if (span.sub_step()) {
    return absl::StrCat(SubStepKindName(span.part), " ", ActionKindName(span.kind), span.microbatch,
                        " c", span.chunk, " L", span.layer);
  }
  const Action action{span.stage, span.kind, span.chunk, span.microbatch};
  std::string text = ActionToStringWithoutStage(action);
  if (span.lane == Lane::kSend) absl::StrAppend(&text, " -> s", span.peer);
  if (span.lane == Lane::kRecv) absl::StrAppend(&text, " <- s", span.peer);
  return text;
}

uint64_t TransferFlowId(int64_t step, ActionKind kind, int from_stage, int to_stage, int chunk,
                        int microbatch) {
  // FNV-1a over the transfer's identity; a receive names the kind of its send.
  if (kind == ActionKind::kRecvForward) kind = ActionKind::kSendForward;
  if (kind == ActionKind::kRecvBackward) kind = ActionKind::kSendBackward;
  uint64_t h = 1469598103934665603ull;
  for (int64_t v : {step, static_cast<int64_t>(kind), static_cast<int64_t>(from_stage),
                    static_cast<int64_t>(to_stage), static_cast<int64_t>(chunk),
                    static_cast<int64_t>(microbatch)}) {
    for (int i = 0; i < 8; ++i) {
      h ^= static_cast<uint64_t>(v >> (8 * i)) & 0xff;
      h *= 1099511628211ull;
    }
  }
  return (h & ((uint64_t{1} << 53) - 1)) | 1;  // non-zero, exact in a JSON double
}

uint64_t TransferFlowId(const Span& s) {
  const bool send = s.lane == Lane::kSend;
  return TransferFlowId(s.step, s.kind, send ? s.stage : s.peer, send ? s.peer : s.stage, s.chunk,
                        s.microbatch);
}

void ComputeWaits(Trace* trace) {
  int num_chunks = trace->num_chunks;
  // Compute (an action's last sub-step) and receive ends by identity.
  absl::flat_hash_map<Key, double> ends;
  std::map<int64_t, double> step_begin;
  for (const StepSpan& s : trace->steps) step_begin[s.step] = s.begin_us;
  for (const Span& s : trace->spans) {
    if (s.lane == Lane::kSend || s.lane == Lane::kAllToAll) continue;
    auto [it, fresh] =
        ends.try_emplace(MakeKey(s.step, s.stage, s.kind, s.chunk, s.microbatch), s.end_us);
    if (!fresh) it->second = std::max(it->second, s.end_us);
    if (s.lane == Lane::kCompute && IsCompute(s.kind))
      num_chunks = std::max(num_chunks, s.chunk + 1);
  }
  auto end_of = [&](int64_t step, int stage, ActionKind kind, int chunk, int mb, double* t) {
    auto it = ends.find(MakeKey(step, stage, kind, chunk, mb));
    if (it == ends.end()) return false;
    *t = it->second;
    return true;
  };
  // An input of (chunk, mb) on `stage`: a receive, or the local producer's end.
  auto input_at = [&](const Span& s, bool forward, double* t) {
    if (forward) {
      return end_of(s.step, s.stage, ActionKind::kRecvForward, s.chunk, s.microbatch, t) ||
             end_of(s.step, s.stage, ActionKind::kForward, s.chunk - 1, s.microbatch, t);
    }
    return end_of(s.step, s.stage, ActionKind::kRecvBackward, s.chunk, s.microbatch, t) ||
           end_of(s.step, s.stage, ActionKind::kBackwardInput, s.chunk + 1, s.microbatch, t) ||
           end_of(s.step, s.stage, ActionKind::kBackward, s.chunk + 1, s.microbatch, t);
  };
  // When the action of `s` had all its inputs; false where the trace does not say.
  auto ready_at = [&](const Span& s, double* ready) {
    switch (s.kind) {
      case ActionKind::kForward:
        if (s.chunk == 0) {
          auto it = step_begin.find(s.step);
          if (it == step_begin.end()) return false;
          *ready = it->second;
          return true;
        }
        return input_at(s, /*forward=*/true, ready);
      case ActionKind::kBackwardInput:
      case ActionKind::kBackward: {
        if (!end_of(s.step, s.stage, ActionKind::kForward, s.chunk, s.microbatch, ready)) {
          return false;
        }
        double grad = 0;
        if (s.chunk + 1 >= num_chunks) return true;
        if (!input_at(s, /*forward=*/false, &grad)) return false;
        *ready = std::max(*ready, grad);
        return true;
      }
      case ActionKind::kBackwardWeight:
        return end_of(s.step, s.stage, ActionKind::kBackwardInput, s.chunk, s.microbatch, ready);
      default:
        return false;
    }
  };
  auto wait_from = [](const Span& s, bool known, double ready) {
    return known ? std::max(0.0, s.begin_us - ready) : -1.0;
  };
  absl::flat_hash_map<Key, std::vector<Span*>> sub_steps;  // by action, both lanes
  for (Span& s : trace->spans) {
    if (s.lane != Lane::kCompute && s.lane != Lane::kAllToAll) continue;
    if (!IsCompute(s.kind)) continue;
    if (s.sub_step()) {
      sub_steps[MakeKey(s.step, s.stage, s.kind, s.chunk, s.microbatch)].push_back(&s);
      continue;
    }
    if (s.lane != Lane::kCompute) continue;
    double ready = 0;
    const bool known = ready_at(s, &ready);
    s.wait_us = wait_from(s, known, ready);
  }
  for (auto& [key, steps] : sub_steps) {
    std::sort(steps.begin(), steps.end(),
              [](const Span* a, const Span* b) { return a->begin_us < b->begin_us; });
    double ready = 0;
    const bool known = ready_at(*steps.front(), &ready);
    steps.front()->wait_us = wait_from(*steps.front(), known, ready);
    for (size_t i = 1; i < steps.size(); ++i) {
      steps[i]->wait_us = std::max(0.0, steps[i]->begin_us - steps[i - 1]->end_us);
    }
  }
}

Trace WithoutFirstSteps(Trace trace, int64_t last) {
  const auto early = [last](const auto& x) { return x.step <= last; };
  trace.spans.erase(std::remove_if(trace.spans.begin(), trace.spans.end(), early),
                    trace.spans.end());
  trace.steps.erase(std::remove_if(trace.steps.begin(), trace.steps.end(), early),
                    trace.steps.end());
  trace.memory.erase(std::remove_if(trace.memory.begin(), trace.memory.end(), early),
                     trace.memory.end());
  return trace;
}

}  // namespace stagehand::runtime::trace
