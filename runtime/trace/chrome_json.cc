// Chrome trace event JSON: writer, reader and the merge of several processes' traces.
// Not a general JSON trace importer: events of other tools are skipped, ours are checked.
#include "runtime/trace/chrome_json.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <tuple>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime::trace {
namespace {

using nlohmann::json;

constexpr int kFormatVersion = 1;
constexpr const char* kMemoryBytes = "activation memory";
constexpr const char* kMemoryCount = "activations held";
// A GPU stage's caching allocator: "in use" and "peak" bytes (absent for CPU stages).
constexpr const char* kDeviceMemory = "device memory";

// Microseconds rounded to nanoseconds, so that files stay short and exact.
double Us(double t) { return std::round(t * 1e3) / 1e3; }

// Rows within one (stage, lane) so that overlapping transfers do not share a thread:
// greedy, in begin order. Returns a row per span index of `spans`.
std::vector<int> PackRows(const std::vector<const Span*>& spans) {
  std::vector<size_t> order(spans.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return spans[a]->begin_us < spans[b]->begin_us; });
  std::vector<int> rows(spans.size(), 0);
  std::vector<double> row_end;
  for (size_t i : order) {
    int row = 0;
    while (row < static_cast<int>(row_end.size()) && row_end[row] > spans[i]->begin_us) ++row;
    if (row == static_cast<int>(row_end.size())) row_end.push_back(0);
    row_end[row] = spans[i]->end_us;
    rows[i] = row;
  }
  return rows;
}

int Tid(Lane lane, int row) { return static_cast<int>(lane) * 100 + row; }

json Metadata(const char* name, int pid, int tid, json args) {
  json e = {{"ph", "M"}, {"name", name}, {"pid", pid}, {"args", std::move(args)}};
  if (tid >= 0) e["tid"] = tid;
  return e;
}

// --- reading -----------------------------------------------------------------------------

class EventReader {
 public:
  // `context` starts every error, e.g. "trace event 12".
  EventReader(const json& event, std::string context) : e_(event), context_(std::move(context)) {}

  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(context_, ": ", what));
  }
  const json* Find(const json& obj, const char* key) const {
    auto it = obj.find(key);
    return it == obj.end() ? nullptr : &*it;
  }
  absl::Status Int(const json& obj, const char* key, int64_t* out, const char* where = "") const {
    const json* v = Find(obj, key);
    if (v == nullptr || !v->is_number_integer()) {
      return Error(absl::StrCat(where, "'", key, "' is missing or not an integer"));
    }
    *out = v->get<int64_t>();
    return absl::OkStatus();
  }
  absl::Status Number(const json& obj, const char* key, double* out, const char* where = "") const {
    const json* v = Find(obj, key);
    if (v == nullptr || !v->is_number() || !std::isfinite(v->get<double>())) {
      return Error(absl::StrCat(where, "'", key, "' is missing or not a finite number"));
    }
    *out = v->get<double>();
    return absl::OkStatus();
  }
  absl::Status String(const json& obj, const char* key, std::string* out,
                      const char* where = "") const {
    const json* v = Find(obj, key);
    if (v == nullptr || !v->is_string()) {
      return Error(absl::StrCat(where, "'", key, "' is missing or not a string"));
    }
    *out = v->get<std::string>();
    return absl::OkStatus();
  }
  const json& event() const { return e_; }

 private:
  const json& e_;
  std::string context_;
};

bool KindFitsLane(Lane lane, ActionKind kind) {
  switch (lane) {
    case Lane::kCompute:
      return IsCompute(kind) || IsPerStage(kind);
    case Lane::kSend:  // the stage's communication lane: transfers out and REDUCE_GRAD
      return kind == ActionKind::kSendForward || kind == ActionKind::kSendBackward ||
             kind == ActionKind::kReduceGrad;
    case Lane::kRecv:
      return kind == ActionKind::kRecvForward || kind == ActionKind::kRecvBackward;
    case Lane::kAllToAll:  // MoE dispatch / combine sub-steps of F, I or B
      return kind == ActionKind::kForward || kind == ActionKind::kBackwardInput ||
             kind == ActionKind::kBackward;
  }
  return false;
}

// A compute or a2a span's sub-step fields, args.layer and args.part (both or neither; an a2a
// span must have them, and its part must be dispatch or combine).
absl::Status ReadSubStep(const EventReader& r, const json& args, Span* span) {
  const json* layer = r.Find(args, "layer");
  const json* part = r.Find(args, "part");
  if (layer == nullptr && part == nullptr) {
    if (span->lane == Lane::kAllToAll) return r.Error("an a2a span needs args.layer and args.part");
    return absl::OkStatus();
  }
  if (layer == nullptr || !layer->is_number_integer() || layer->get<int64_t>() < 0) {
    return r.Error("args.layer is missing, not an integer or negative");
  }
  if (part == nullptr || !part->is_string()) return r.Error("args.part is missing or not a string");
  absl::StatusOr<SubStepKind> kind = ParseSubStepKind(part->get<std::string>());
  if (!kind.ok()) return r.Error(absl::StrCat("args.part: ", kind.status().message()));
  if ((span->lane == Lane::kAllToAll) != IsCommunication(*kind)) {
    return r.Error(absl::StrCat("sub-step part ", SubStepKindName(*kind), " does not run on the ",
                                LaneName(span->lane), " lane"));
  }
  span->layer = static_cast<int>(layer->get<int64_t>());
  span->part = *kind;
  return absl::OkStatus();
}

absl::Status ReadSpan(const EventReader& r, const Trace& trace, Span* span) {
  const json& e = r.event();
  const json* args = r.Find(e, "args");
  if (args == nullptr || !args->is_object()) return r.Error("'args' is missing or not an object");
  double ts = 0, dur = 0;
  if (absl::Status s = r.Number(e, "ts", &ts); !s.ok()) return s;
  if (absl::Status s = r.Number(e, "dur", &dur); !s.ok()) return s;
  if (dur < 0) return r.Error(absl::StrCat("'dur' is negative (", dur, ")"));
  std::string lane, action;
  int64_t stage = 0, chunk = 0, mb = 0, step = 0;
  const char* in_args = "args.";
  if (absl::Status s = r.String(*args, "lane", &lane, in_args); !s.ok()) return s;
  if (!ParseLane(lane, &span->lane)) {
    return r.Error(absl::StrCat("args.lane '", lane, "' is not compute, send, recv or a2a"));
  }
  if (absl::Status s = r.String(*args, "action", &action, in_args); !s.ok()) return s;
  absl::StatusOr<ActionKind> kind = ParseActionKind(action);
  if (!kind.ok()) return r.Error(absl::StrCat("args.action: ", kind.status().message()));
  if (!KindFitsLane(span->lane, *kind)) {
    return r.Error(absl::StrCat("action ", action, " does not run on a ", lane, " lane"));
  }
  for (auto [key, out] : {std::pair<const char*, int64_t*>{"stage", &stage},
                          {"chunk", &chunk},
                          {"microbatch", &mb},
                          {"step", &step}}) {
    if (absl::Status s = r.Int(*args, key, out, in_args); !s.ok()) return s;
  }
  if (stage < 0 || stage >= trace.num_stages) {
    return r.Error(absl::StrCat("args.stage ", stage, " is outside [0, ", trace.num_stages, ")"));
  }
  if (chunk < 0 || mb < 0) return r.Error("args.chunk and args.microbatch must not be negative");
  span->stage = static_cast<int>(stage);
  span->kind = *kind;
  span->chunk = static_cast<int>(chunk);
  span->microbatch = static_cast<int>(mb);
  span->step = step;
  span->begin_us = ts;
  span->end_us = ts + dur;
  if (span->lane == Lane::kCompute || span->lane == Lane::kAllToAll) {
    if (const json* w = r.Find(*args, "wait_us"); w != nullptr) {
      if (!w->is_number()) return r.Error("args.wait_us is not a number");
      span->wait_us = w->get<double>();
    }
    return ReadSubStep(r, *args, span);
  }
  int64_t peer = 0, bytes = 0;
  if (absl::Status s = r.Int(*args, "peer", &peer, in_args); !s.ok()) return s;
  if (absl::Status s = r.Int(*args, "bytes", &bytes, in_args); !s.ok()) return s;
  const bool reduction = span->kind == ActionKind::kReduceGrad;  // no peer stage: -1
  if ((peer < 0 || peer >= trace.num_stages) && !(reduction && peer == -1)) {
    return r.Error(absl::StrCat("args.peer ", peer, " is outside [0, ", trace.num_stages, ")"));
  }
  if (bytes < 0) return r.Error("args.bytes is negative");
  span->peer = static_cast<int>(peer);
  span->bytes = bytes;
  return absl::OkStatus();
}

}  // namespace

namespace {

// A span as a complete event ("X") on its lane's row, with its flow binding.
json SpanEvent(const Span& s, Lane lane, int row) {
  json args = {{"lane", LaneName(lane)},           {"stage", s.stage},
               {"action", ActionKindName(s.kind)}, {"chunk", s.chunk},
               {"microbatch", s.microbatch},       {"step", s.step}};
  const bool transfer = lane == Lane::kSend || lane == Lane::kRecv;
  if (!transfer) {
    if (s.wait_us >= 0) args["wait_us"] = Us(s.wait_us);
    if (s.sub_step()) {
      args["layer"] = s.layer;
      args["part"] = std::string(SubStepKindName(s.part));
    }
  } else {
    args["peer"] = s.peer;
    args["bytes"] = s.bytes;
  }
  const double ts = Us(s.begin_us);
  json event = {{"ph", "X"},
                {"cat", lane == Lane::kCompute ? "compute"
                        : transfer             ? "transfer"
                                               : "a2a"},
                {"name", SpanLabel(s)},
                {"pid", s.stage},
                {"tid", Tid(lane, row)},
                {"ts", ts},
                {"dur", Us(Us(s.end_us) - ts)},
                {"args", std::move(args)}};
  // The arrow from a send to its receive (flow events v2: bound to these slices).
  if (transfer && s.kind != ActionKind::kReduceGrad) {
    event["bind_id"] = TransferFlowId(s);
    event[lane == Lane::kSend ? "flow_out" : "flow_in"] = true;
  }
  return event;
}

}  // namespace

std::string ToChromeJson(const Trace& trace) {
  json events = json::array();
  // Processes and threads.
  std::map<std::pair<Lane, int>, std::vector<const Span*>> by_lane;  // (lane, stage)
  for (const Span& s : trace.spans) by_lane[{s.lane, s.stage}].push_back(&s);
  std::set<int> stages;
  for (int s = 0; s < trace.num_stages; ++s) stages.insert(s);
  for (int s : stages) {
    events.push_back(Metadata("process_name", s, -1, {{"name", absl::StrCat("stage ", s)}}));
    events.push_back(Metadata("process_sort_index", s, -1, {{"sort_index", s}}));
  }
  events.push_back(Metadata("process_name", kStepsPid, -1, {{"name", "steps"}}));
  events.push_back(Metadata("process_sort_index", kStepsPid, -1, {{"sort_index", -1}}));
  events.push_back(Metadata("thread_name", kStepsPid, 0, {{"name", trace.process}}));
  for (const StepSpan& st : trace.steps) {
    events.push_back({{"ph", "X"},
                      {"cat", "step"},
                      {"name", absl::StrCat("step ", st.step)},
                      {"pid", kStepsPid},
                      {"tid", 0},
                      {"ts", Us(st.begin_us)},
                      {"dur", Us(st.end_us - st.begin_us)},
                      {"args", {{"step", st.step}}}});
  }
  // Lanes in order compute, send, recv, so that each flow's source precedes its end in the
  // file (viewers keep file order among equal timestamps).
  for (const auto& [key, spans] : by_lane) {
    const auto [lane, stage] = key;
    const std::vector<int> rows = PackRows(spans);
    const int num_rows = spans.empty() ? 0 : *std::max_element(rows.begin(), rows.end()) + 1;
    for (int row = 0; row < num_rows; ++row) {
      std::string name(LaneName(lane));
      if (row > 0) absl::StrAppend(&name, " ", row + 1);
      events.push_back(Metadata("thread_name", stage, Tid(lane, row), {{"name", name}}));
      events.push_back(
          Metadata("thread_sort_index", stage, Tid(lane, row), {{"sort_index", Tid(lane, row)}}));
    }
    for (size_t i = 0; i < spans.size(); ++i) {
      events.push_back(SpanEvent(*spans[i], lane, rows[i]));
    }
  }
  for (const MemorySample& m : trace.memory) {
    events.push_back({{"ph", "C"},
                      {"name", kMemoryCount},
                      {"pid", m.stage},
                      {"ts", Us(m.time_us)},
                      {"args", {{"activations", m.activations}}}});
    events.push_back({{"ph", "C"},
                      {"name", kMemoryBytes},
                      {"pid", m.stage},
                      {"ts", Us(m.time_us)},
                      {"args", {{"bytes", m.bytes}}}});
    if (m.device_in_use >= 0) {
      events.push_back({{"ph", "C"},
                        {"name", kDeviceMemory},
                        {"pid", m.stage},
                        {"ts", Us(m.time_us)},
                        {"args", {{"in use", m.device_in_use}, {"peak", m.device_peak}}}});
    }
  }
  json other = {{"stagehand_trace", kFormatVersion},
                {"process", trace.process},
                {"num_stages", trace.num_stages},
                {"num_chunks", trace.num_chunks},
                {"num_microbatches", trace.num_microbatches},
                {"epoch_unix_us", Us(trace.epoch_unix_us)},
                {"clock_offset_us", Us(trace.clock_offset_us)},
                {"virtual_time", trace.virtual_time}};
  json doc = {{"displayTimeUnit", "ms"},
              {"otherData", std::move(other)},
              {"traceEvents", std::move(events)}};
  return doc.dump();
}

namespace {

// The document's top level: a JSON object with 'traceEvents' and Stagehand's 'otherData'.
absl::StatusOr<json> ParseTraceDocument(absl::string_view text) {
  json doc;
  try {
    doc = json::parse(text.begin(), text.end());
  } catch (const json::parse_error& e) {
    // e.byte counts from 1; past the last byte means the text ended mid-document.
    const bool ended = e.byte > text.size() || absl::StrContains(e.what(), "end of input");
    return absl::InvalidArgumentError(
        absl::StrCat("not valid JSON (", ended ? "the file ends early: truncated?" : "malformed",
                     "): parse error at byte ", e.byte, " of ", text.size(), ": ", e.what()));
  } catch (const json::exception& e) {  // e.g. a number no double holds: [1e999]
    return absl::InvalidArgumentError(absl::StrCat("not valid JSON (malformed): ", e.what()));
  }
  if (!doc.is_object()) return absl::InvalidArgumentError("not a trace: the JSON is not an object");
  auto events_it = doc.find("traceEvents");
  if (events_it == doc.end() || !events_it->is_array()) {
    return absl::InvalidArgumentError("not a trace: no 'traceEvents' array");
  }
  auto other_it = doc.find("otherData");
  if (other_it == doc.end() || !other_it->is_object() ||
      other_it->find("stagehand_trace") == other_it->end()) {
    return absl::InvalidArgumentError(
        "not a Stagehand trace: 'otherData.stagehand_trace' is missing (write traces with "
        "launch --trace)");
  }
  return doc;
}

// otherData: the format version and the trace's shape, bounded.
absl::Status ReadHeader(const json& other, Trace& trace) {
  EventReader r(other, "otherData");
  int64_t version = 0, p = 0, c = 0, m = 0;
  if (absl::Status s = r.Int(other, "stagehand_trace", &version); !s.ok()) return s;
  if (version != kFormatVersion) {
    return absl::InvalidArgumentError(absl::StrCat("trace format version ", version,
                                                   " is not the version this tool reads (",
                                                   kFormatVersion, ")"));
  }
  for (auto [key, out] : {std::pair<const char*, int64_t*>{"num_stages", &p},
                          {"num_chunks", &c},
                          {"num_microbatches", &m}}) {
    if (absl::Status s = r.Int(other, key, out); !s.ok()) return s;
  }
  if (p <= 0 || c < 0 || m < 0) {
    return r.Error("num_stages must be positive, num_chunks and num_microbatches not negative");
  }
  // What a file may make us allocate: per-stage tables in summary, render and merge.
  for (auto [key, value, limit] :
       {std::tuple<const char*, int64_t, int64_t>{"num_stages", p, kMaxStages},
        {"num_chunks", c, kMaxChunks},
        {"num_microbatches", m, kMaxMicrobatches}}) {
    if (value > limit)
      return r.Error(absl::StrCat(key, " ", value, " is too large: at most ", limit));
  }
  trace.num_stages = static_cast<int>(p);
  trace.num_chunks = static_cast<int>(c);
  trace.num_microbatches = static_cast<int>(m);
  if (absl::Status s = r.Number(other, "epoch_unix_us", &trace.epoch_unix_us); !s.ok()) return s;
  if (absl::Status s = r.Number(other, "clock_offset_us", &trace.clock_offset_us); !s.ok())
    return s;
  if (auto it = other.find("process"); it != other.end() && it->is_string())
    trace.process = it->get<std::string>();
  if (auto it = other.find("virtual_time"); it != other.end() && it->is_boolean())
    trace.virtual_time = it->get<bool>();
  return absl::OkStatus();
}

// Step spans, compute and transfer spans, memory counters.
absl::Status ReadEvents(const json& events, Trace& trace) {
  std::map<std::pair<int64_t, double>, int64_t> memory_bytes;  // (pid, ts) -> bytes
  // (pid, ts) -> the device allocator's in-use and peak bytes
  std::map<std::pair<int64_t, double>, std::pair<int64_t, int64_t>> device_memory;
  for (size_t i = 0; i < events.size(); ++i) {
    const json& e = events[i];
    EventReader r(e, absl::StrCat("trace event ", i));
    if (!e.is_object()) return r.Error("not an object");
    std::string ph;
    if (absl::Status s = r.String(e, "ph", &ph); !s.ok()) return s;
    if (ph == "X") {
      std::string cat;
      if (auto it = e.find("cat"); it != e.end() && it->is_string()) cat = it->get<std::string>();
      if (cat == "step") {
        StepSpan st;
        double ts = 0, dur = 0;
        const json* args = r.Find(e, "args");
        if (args == nullptr || !args->is_object())
          return r.Error("'args' is missing or not an object");
        if (absl::Status s = r.Int(*args, "step", &st.step, "args."); !s.ok()) return s;
        if (absl::Status s = r.Number(e, "ts", &ts); !s.ok()) return s;
        if (absl::Status s = r.Number(e, "dur", &dur); !s.ok()) return s;
        if (dur < 0) return r.Error("'dur' is negative");
        st.begin_us = ts;
        st.end_us = ts + dur;
        trace.steps.push_back(st);
      } else if (cat == "compute" || cat == "transfer" || cat == "a2a") {
        Span span;
        if (absl::Status s = ReadSpan(r, trace, &span); !s.ok()) return s;
        trace.spans.push_back(span);
      }
    } else if (ph == "C") {
      std::string name;
      int64_t pid = 0;
      double ts = 0;
      if (absl::Status s = r.String(e, "name", &name); !s.ok()) return s;
      if (name != kMemoryBytes && name != kMemoryCount && name != kDeviceMemory) continue;
      if (absl::Status s = r.Int(e, "pid", &pid); !s.ok()) return s;
      if (absl::Status s = r.Number(e, "ts", &ts); !s.ok()) return s;
      if (pid < 0 || pid >= trace.num_stages)
        return r.Error(absl::StrCat("counter pid ", pid, " is not a stage"));
      const json* args = r.Find(e, "args");
      if (args == nullptr || !args->is_object())
        return r.Error("'args' is missing or not an object");
      if (name == kDeviceMemory) {
        int64_t in_use = 0, peak = 0;
        if (absl::Status s = r.Int(*args, "in use", &in_use, "args."); !s.ok()) return s;
        if (absl::Status s = r.Int(*args, "peak", &peak, "args."); !s.ok()) return s;
        if (in_use < 0 || peak < 0) return r.Error("negative device memory");
        device_memory[{pid, ts}] = {in_use, peak};
        continue;
      }
      int64_t value = 0;
      if (absl::Status s =
              r.Int(*args, name == kMemoryBytes ? "bytes" : "activations", &value, "args.");
          !s.ok()) {
        return s;
      }
      if (name == kMemoryBytes) {
        memory_bytes[{pid, ts}] = value;
      } else {
        trace.memory.push_back(
            MemorySample{static_cast<int>(pid), 0, ts, static_cast<int>(value), 0});
      }
    }
  }
  for (MemorySample& m : trace.memory) {
    auto it = memory_bytes.find({m.stage, m.time_us});
    if (it != memory_bytes.end()) m.bytes = it->second;
    auto device = device_memory.find({m.stage, m.time_us});
    if (device != device_memory.end()) std::tie(m.device_in_use, m.device_peak) = device->second;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Trace> FromChromeJson(absl::string_view text) {
  absl::StatusOr<json> doc = ParseTraceDocument(text);
  if (!doc.ok()) return doc.status();
  Trace trace;
  RETURN_IF_ERROR(ReadHeader(doc->at("otherData"), trace));
  RETURN_IF_ERROR(ReadEvents(doc->at("traceEvents"), trace));
  return trace;
}

absl::Status WriteChromeJsonFile(const Trace& trace, const std::string& path) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::NotFoundError(absl::StrCat("cannot open ", path, " for writing"));
  out << ToChromeJson(trace);
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat("writing ", path, " failed"));
  return absl::OkStatus();
}

absl::StatusOr<Trace> ReadChromeJsonFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open trace file ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  absl::StatusOr<Trace> trace = FromChromeJson(buffer.str());
  if (!trace.ok()) {
    return absl::Status(trace.status().code(), absl::StrCat(path, ": ", trace.status().message()));
  }
  return trace;
}

absl::StatusOr<Trace> MergeTraces(const std::vector<Trace>& traces) {
  if (traces.empty()) return absl::InvalidArgumentError("no traces to merge");
  const Trace& first = traces.front();
  double reference = first.epoch_unix_us + first.clock_offset_us;
  for (const Trace& t : traces) {
    if (t.num_stages != first.num_stages || t.num_chunks != first.num_chunks ||
        t.num_microbatches != first.num_microbatches) {
      return absl::InvalidArgumentError(
          absl::StrCat("traces disagree on the step: ", first.process, " has P=", first.num_stages,
                       " C=", first.num_chunks, " M=", first.num_microbatches, ", ", t.process,
                       " has P=", t.num_stages, " C=", t.num_chunks, " M=", t.num_microbatches));
    }
    reference = std::min(reference, t.epoch_unix_us + t.clock_offset_us);
  }
  Trace merged;
  merged.num_stages = first.num_stages;
  merged.num_chunks = first.num_chunks;
  merged.num_microbatches = first.num_microbatches;
  merged.epoch_unix_us = reference;
  merged.virtual_time = first.virtual_time;
  std::vector<std::string> names;
  std::map<int, std::string> stage_owner;  // stage -> process that holds its compute
  std::map<int64_t, StepSpan> steps;
  for (const Trace& t : traces) {
    names.push_back(t.process);
    const double shift = t.epoch_unix_us + t.clock_offset_us - reference;
    std::set<int> held;
    for (const Span& s : t.spans) {
      if (s.lane == Lane::kCompute) held.insert(s.stage);
    }
    for (int stage : held) {
      auto [it, inserted] = stage_owner.emplace(stage, t.process);
      if (!inserted) {
        return absl::InvalidArgumentError(absl::StrCat(
            "stage ", stage, " has events in two traces: ", it->second, " and ", t.process));
      }
    }
    for (Span s : t.spans) {
      s.begin_us += shift;
      s.end_us += shift;
      merged.spans.push_back(s);
    }
    for (MemorySample m : t.memory) {
      m.time_us += shift;
      merged.memory.push_back(m);
    }
    for (const StepSpan& st : t.steps) {
      auto [it, inserted] =
          steps.emplace(st.step, StepSpan{st.step, st.begin_us + shift, st.end_us + shift});
      if (!inserted) {
        it->second.begin_us = std::min(it->second.begin_us, st.begin_us + shift);
        it->second.end_us = std::max(it->second.end_us, st.end_us + shift);
      }
    }
  }
  merged.process = absl::StrJoin(names, " + ");
  for (const auto& [step, st] : steps) merged.steps.push_back(st);
  // A receive recorded without its send (the send was in another process) starts with it.
  absl::flat_hash_map<uint64_t, double> send_begin;
  for (const Span& s : merged.spans) {
    if (s.lane == Lane::kSend && s.kind != ActionKind::kReduceGrad) {
      send_begin[TransferFlowId(s)] = s.begin_us;
    }
  }
  for (Span& s : merged.spans) {
    if (s.lane != Lane::kRecv || s.begin_us < s.end_us) continue;
    auto it = send_begin.find(TransferFlowId(s));
    if (it != send_begin.end() && it->second <= s.end_us) s.begin_us = it->second;
  }
  std::stable_sort(merged.spans.begin(), merged.spans.end(), [](const Span& a, const Span& b) {
    return std::tie(a.stage, a.lane, a.begin_us) < std::tie(b.stage, b.lane, b.begin_us);
  });
  ComputeWaits(&merged);
  return merged;
}

}  // namespace stagehand::runtime::trace
