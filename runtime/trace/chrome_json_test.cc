// Tests of the Chrome trace JSON: what it writes (processes, lanes, flows, counters), that
// it reads back what it wrote, that bad or truncated files get a clear error, and that
// traces of several processes merge onto one clock.
#include "runtime/trace/chrome_json.h"

#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/planner.h"
#include "runtime/simulator.h"
#include "runtime/trace/from_simulation.h"

namespace stagehand::runtime::trace {
namespace {

using nlohmann::json;

Trace Simulated(int P, int M, double tau) {
  auto def = PlannerRegistry::Default().Get("1f1b");
  EXPECT_TRUE(def.ok());
  auto spec = (*def)->MakeSpec({P, M, 0});
  CostModel cost;
  cost.transfer = tau;
  auto sim = SimulateSpec(**def, *spec, cost);
  EXPECT_TRUE(sim.ok()) << sim.status();
  return TraceFromSimulation(*sim, *spec);
}

std::string ErrorOf(const std::string& text) {
  absl::StatusOr<Trace> t = FromChromeJson(text);
  EXPECT_FALSE(t.ok()) << "accepted: " << text.substr(0, 200);
  if (t.ok()) return "";
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(t.status().message());
}

TEST(ChromeJsonTest, OneProcessPerStageOneThreadPerLaneFlowsAndCounters) {
  const json doc = json::parse(ToChromeJson(Simulated(4, 8, 0.5)));
  std::set<int> pids;
  std::set<std::string> process_names, thread_names;
  int flows_out = 0, flows_in = 0, counters = 0, complete = 0;
  std::set<uint64_t> out_ids, in_ids;
  for (const json& e : doc["traceEvents"]) {
    const std::string ph = e["ph"];
    if (ph == "M" && e["name"] == "process_name")
      process_names.insert(e["args"]["name"].get<std::string>());
    if (ph == "M" && e["name"] == "thread_name")
      thread_names.insert(e["args"]["name"].get<std::string>());
    if (ph == "X") {
      ++complete;
      pids.insert(e["pid"].get<int>());
    }
    if (e.contains("flow_out")) out_ids.insert(e["bind_id"].get<uint64_t>()), ++flows_out;
    if (e.contains("flow_in")) {
      in_ids.insert(e["bind_id"].get<uint64_t>()), ++flows_in;
      // The send, earlier in the file, starts no later: viewers bind in file order.
      EXPECT_TRUE(out_ids.count(e["bind_id"].get<uint64_t>()));
    }
    if (ph == "C") ++counters;
  }
  EXPECT_EQ(process_names,
            (std::set<std::string>{"stage 0", "stage 1", "stage 2", "stage 3", "steps"}));
  EXPECT_TRUE(thread_names.count("compute") && thread_names.count("send") &&
              thread_names.count("recv"));
  EXPECT_EQ(pids, (std::set<int>{0, 1, 2, 3, kStepsPid}));
  EXPECT_EQ(complete, 64 + 2 * 48 + 1);
  // Every send has an arrow to its receive.
  EXPECT_EQ(flows_out, 48);
  EXPECT_EQ(flows_in, 48);
  EXPECT_EQ(out_ids, in_ids);
  EXPECT_EQ(counters, 2 * 64);  // activations held and their bytes, after every F and B
  EXPECT_EQ(doc["otherData"]["stagehand_trace"], 1);
  EXPECT_EQ(doc["displayTimeUnit"], "ms");
}

TEST(ChromeJsonTest, ReadsBackWhatItWrote) {
  Trace original = Simulated(4, 8, 0.5);
  original.epoch_unix_us = 1.7e15;
  original.clock_offset_us = -12.5;
  absl::StatusOr<Trace> back = FromChromeJson(ToChromeJson(original));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->num_stages, 4);
  EXPECT_EQ(back->num_chunks, 4);
  EXPECT_EQ(back->num_microbatches, 8);
  EXPECT_TRUE(back->virtual_time);
  EXPECT_DOUBLE_EQ(back->epoch_unix_us, 1.7e15);
  EXPECT_DOUBLE_EQ(back->clock_offset_us, -12.5);
  ASSERT_EQ(back->spans.size(), original.spans.size());
  ASSERT_EQ(back->memory.size(), original.memory.size());
  ASSERT_EQ(back->steps.size(), 1u);
  auto key = [](const Span& s) {
    return std::make_tuple(s.stage, s.lane, s.begin_us, s.kind, s.chunk, s.microbatch);
  };
  std::set<std::tuple<int, Lane, double, ActionKind, int, int>> a, b;
  for (const Span& s : original.spans) a.insert(key(s));
  for (const Span& s : back->spans) b.insert(key(s));
  EXPECT_EQ(a, b);
  for (const Span& s : back->spans) {
    if (s.lane == Lane::kCompute) {
      EXPECT_GE(s.wait_us, 0);
    } else {
      EXPECT_GE(s.peer, 0);
    }
  }
}

// A GPU stage's device memory rides on its own counter ("device memory": in use and peak) and
// reads back onto its sample; CPU samples have none, and a bad counter is named.
TEST(ChromeJsonTest, DeviceMemoryCountersReadBack) {
  Trace original = Simulated(2, 2, 0.5);
  ASSERT_GE(original.memory.size(), 2u);
  original.memory[0].device_in_use = 3 << 20;
  original.memory[0].device_peak = 5 << 20;
  const std::string text = ToChromeJson(original);
  EXPECT_NE(text.find("\"device memory\""), std::string::npos);
  absl::StatusOr<Trace> back = FromChromeJson(text);
  ASSERT_TRUE(back.ok()) << back.status();
  int with_device = 0;
  for (const MemorySample& m : back->memory) {
    if (m.device_in_use < 0) continue;
    ++with_device;
    EXPECT_EQ(m.device_in_use, 3 << 20);
    EXPECT_EQ(m.device_peak, 5 << 20);
    EXPECT_EQ(m.stage, original.memory[0].stage);
  }
  EXPECT_EQ(with_device, 1);
  const std::string header =
      "{\"otherData\": {\"stagehand_trace\": 1, \"num_stages\": 2, \"num_chunks\": 2, "
      "\"num_microbatches\": 1, \"epoch_unix_us\": 0, \"clock_offset_us\": 0}, "
      "\"traceEvents\": [";
  EXPECT_NE(ErrorOf(absl::StrCat(header,
                                 "{\"ph\": \"C\", \"name\": \"device memory\", \"pid\": 0, "
                                 "\"ts\": 1, \"args\": {\"in use\": -4, \"peak\": 1}}]}"))
                .find("negative device memory"),
            std::string::npos);
  EXPECT_NE(ErrorOf(absl::StrCat(header,
                                 "{\"ph\": \"C\", \"name\": \"device memory\", \"pid\": 0, "
                                 "\"ts\": 1, \"args\": {\"in use\": 4}}]}"))
                .find("peak"),
            std::string::npos);
}

TEST(ChromeJsonTest, SubStepsKeepTheirLaneLayerAndPart) {
  Trace original;
  original.num_stages = original.num_chunks = original.num_microbatches = 1;
  Span attn;
  attn.kind = ActionKind::kBackward;
  attn.layer = 2;
  attn.part = SubStepKind::kAttention;
  attn.begin_us = 5;
  attn.end_us = 9;
  Span dispatch = attn;
  dispatch.lane = Lane::kAllToAll;
  dispatch.part = SubStepKind::kDispatch;
  dispatch.begin_us = 1;
  dispatch.end_us = 5;
  original.spans = {attn, dispatch};
  const std::string text = ToChromeJson(original);
  EXPECT_NE(text.find("\"dispatch B0 c0 L2\""), std::string::npos) << text;
  absl::StatusOr<Trace> back = FromChromeJson(text);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->spans.size(), 2u);
  for (const Span& s : back->spans) {
    EXPECT_EQ(s.layer, 2);
    EXPECT_EQ(s.part, s.lane == Lane::kAllToAll ? SubStepKind::kDispatch : SubStepKind::kAttention);
    EXPECT_EQ(s.kind, ActionKind::kBackward);
  }
  // An a2a span names its sub-step, a dispatch or combine.
  json bad = json::parse(text);
  for (json& e : bad["traceEvents"]) {
    if (e.contains("args") && e["args"].contains("part") && e["args"]["lane"] == "a2a") {
      e["args"]["part"] = "experts";
    }
  }
  EXPECT_NE(ErrorOf(bad.dump()).find("sub-step part experts does not run on the a2a lane"),
            std::string::npos);
  for (json& e : bad["traceEvents"]) {
    if (e.contains("args") && e["args"].contains("part")) e["args"].erase("part");
  }
  EXPECT_NE(ErrorOf(bad.dump()).find("args.part is missing"), std::string::npos);
}

TEST(ChromeJsonTest, OverlappingTransfersGetTheirOwnThreads) {
  Trace t;
  t.num_stages = 2;
  for (int mb = 0; mb < 2; ++mb) {
    Span s;
    s.lane = Lane::kSend;
    s.kind = ActionKind::kSendForward;
    s.peer = 1;
    s.microbatch = mb;
    s.begin_us = mb;
    s.end_us = mb + 5;  // overlaps the other
    t.spans.push_back(s);
  }
  const std::string text = ToChromeJson(t);
  EXPECT_NE(text.find("\"send 2\""), std::string::npos);
  ASSERT_TRUE(FromChromeJson(text).ok());
}

TEST(ChromeJsonTest, TruncatedFileSaysSo) {
  const std::string text = ToChromeJson(Simulated(2, 2, 0));
  for (size_t cut : {size_t{0}, size_t{1}, text.size() / 2, text.size() - 1}) {
    const std::string error = ErrorOf(text.substr(0, cut));
    EXPECT_NE(error.find("not valid JSON"), std::string::npos) << error;
    EXPECT_NE(error.find("truncated"), std::string::npos) << error;
  }
}

TEST(ChromeJsonTest, MalformedInputIsNamed) {
  EXPECT_NE(ErrorOf("{\"traceEvents\": [}").find("malformed"), std::string::npos);
  EXPECT_NE(ErrorOf("[1, 2]").find("not an object"), std::string::npos);
  EXPECT_NE(ErrorOf("{\"foo\": 1}").find("traceEvents"), std::string::npos);
  EXPECT_NE(ErrorOf("{\"traceEvents\": []}").find("not a Stagehand trace"), std::string::npos);
  const std::string header =
      "{\"otherData\": {\"stagehand_trace\": 1, \"num_stages\": 2, \"num_chunks\": 2, "
      "\"num_microbatches\": 1, \"epoch_unix_us\": 0, \"clock_offset_us\": 0}, \"traceEvents\": [";
  auto with = [&](const std::string& event) { return absl::StrCat(header, event, "]}"); };
  EXPECT_TRUE(FromChromeJson(with("")).ok());
  EXPECT_NE(ErrorOf(with("3")).find("trace event 0: not an object"), std::string::npos);
  EXPECT_NE(ErrorOf(with("{\"ph\": \"X\", \"cat\": \"compute\", \"ts\": 1, \"dur\": 1}"))
                .find("trace event 0: 'args' is missing"),
            std::string::npos);
  const std::string args =
      "\"args\": {\"lane\": \"compute\", \"stage\": 0, \"action\": \"F\", \"chunk\": 0, "
      "\"microbatch\": 0, \"step\": 1}";
  EXPECT_TRUE(FromChromeJson(
                  with(absl::StrCat("{\"ph\": \"X\", \"cat\": \"compute\", \"ts\": 1, \"dur\": 1, ",
                                    args, "}")))
                  .ok());
  EXPECT_NE(
      ErrorOf(with(absl::StrCat("{\"ph\": \"X\", \"cat\": \"compute\", \"ts\": \"1\", \"dur\": 1, ",
                                args, "}")))
          .find("'ts' is missing or not a finite number"),
      std::string::npos);
  EXPECT_NE(
      ErrorOf(with(absl::StrCat("{\"ph\": \"X\", \"cat\": \"compute\", \"ts\": 1, \"dur\": -1, ",
                                args, "}")))
          .find("'dur' is negative"),
      std::string::npos);
  EXPECT_NE(ErrorOf(with("{\"ph\": \"X\", \"cat\": \"compute\", \"ts\": 1, \"dur\": 1, \"args\": "
                         "{\"lane\": \"compute\", \"stage\": 5, \"action\": \"F\", \"chunk\": 0, "
                         "\"microbatch\": 0, \"step\": 1}}"))
                .find("args.stage 5 is outside [0, 2)"),
            std::string::npos);
  EXPECT_NE(ErrorOf(with("{\"ph\": \"X\", \"cat\": \"compute\", \"ts\": 1, \"dur\": 1, \"args\": "
                         "{\"lane\": \"compute\", \"stage\": 0, \"action\": \"Q\", \"chunk\": 0, "
                         "\"microbatch\": 0, \"step\": 1}}"))
                .find("args.action"),
            std::string::npos);
  EXPECT_NE(ErrorOf(with("{\"ph\": \"X\", \"cat\": \"transfer\", \"ts\": 1, \"dur\": 1, \"args\": "
                         "{\"lane\": \"send\", \"stage\": 0, \"action\": \"F\", \"chunk\": 0, "
                         "\"microbatch\": 0, \"step\": 1}}"))
                .find("does not run on a send lane"),
            std::string::npos);
  EXPECT_NE(ErrorOf(with("{\"ph\": \"X\", \"cat\": \"transfer\", \"ts\": 1, \"dur\": 1, \"args\": "
                         "{\"lane\": \"send\", \"stage\": 0, \"action\": \"SEND_F\", \"chunk\": 1, "
                         "\"microbatch\": 0, \"step\": 1}}"))
                .find("'peer' is missing"),
            std::string::npos);
  EXPECT_NE(
      ErrorOf("{\"otherData\": {\"stagehand_trace\": 9}, \"traceEvents\": []}").find("version 9"),
      std::string::npos);
  EXPECT_NE(
      ErrorOf("{\"otherData\": {\"stagehand_trace\": 1, \"num_stages\": 0, \"num_chunks\": 0, "
              "\"num_microbatches\": 0}, \"traceEvents\": []}")
          .find("otherData: num_stages must be positive"),
      std::string::npos);
}

TEST(ChromeJsonTest, MissingFileIsNotFound) {
  auto t = ReadChromeJsonFile("/nonexistent/trace.json");
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(std::string(t.status().message()).find("/nonexistent/trace.json"), std::string::npos);
}

// Two processes, each holding half the stages, whose clocks started 250 us apart: the
// merge puts every event on the earlier one's clock and gives each receive its send's
// begin, recorded in the other process.
TEST(ChromeJsonTest, MergePutsProcessesOnOneClock) {
  const Trace whole = Simulated(4, 8, 0.5);
  Trace a = whole, b = whole;
  a.process = "rank 0";
  b.process = "rank 1";
  a.epoch_unix_us = 1'000'000;
  b.epoch_unix_us = 1'000'250;  // b's time 0 is 250 us after a's
  auto keep = [](Trace& t, bool low, double shift) {
    std::vector<Span> spans;
    for (Span s : t.spans) {
      if ((s.stage < 2) != low) continue;
      s.begin_us -= shift;
      s.end_us -= shift;
      if (s.lane == Lane::kRecv && (s.peer < 2) != low) s.begin_us = s.end_us;  // send elsewhere
      spans.push_back(s);
    }
    t.spans = spans;
    std::vector<MemorySample> memory;
    for (MemorySample m : t.memory) {
      if ((m.stage < 2) != low) continue;
      m.time_us -= shift;
      memory.push_back(m);
    }
    t.memory = memory;
    for (StepSpan& st : t.steps) st.begin_us -= shift, st.end_us -= shift;
  };
  keep(a, true, 0);
  keep(b, false, 250);
  // Through the file format, as separate files would be.
  auto a2 = FromChromeJson(ToChromeJson(a));
  auto b2 = FromChromeJson(ToChromeJson(b));
  ASSERT_TRUE(a2.ok() && b2.ok());
  absl::StatusOr<Trace> merged = MergeTraces({*b2, *a2});
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_EQ(merged->process, "rank 1 + rank 0");
  EXPECT_DOUBLE_EQ(merged->epoch_unix_us, 1'000'000);
  ASSERT_EQ(merged->spans.size(), whole.spans.size());
  auto key = [](const Span& s) {
    return std::make_tuple(s.stage, s.lane, s.kind, s.chunk, s.microbatch, s.begin_us, s.end_us);
  };
  std::set<std::tuple<int, Lane, ActionKind, int, int, double, double>> expected, got;
  for (const Span& s : whole.spans) expected.insert(key(s));
  for (const Span& s : merged->spans) got.insert(key(s));
  EXPECT_EQ(got, expected);
  ASSERT_EQ(merged->steps.size(), 1u);
  EXPECT_NEAR(merged->steps[0].end_us, whole.steps[0].end_us, 1e-9);
}

TEST(ChromeJsonTest, MergeAppliesClockOffsets) {
  Trace a = Simulated(2, 2, 0), b = Simulated(2, 2, 0);
  a.spans.erase(
      std::remove_if(a.spans.begin(), a.spans.end(), [](const Span& s) { return s.stage != 0; }),
      a.spans.end());
  b.spans.erase(
      std::remove_if(b.spans.begin(), b.spans.end(), [](const Span& s) { return s.stage != 1; }),
      b.spans.end());
  a.epoch_unix_us = 5000;
  b.epoch_unix_us = 5000;
  b.clock_offset_us = 100;  // b's wall clock is 100 us behind the reference
  auto merged = MergeTraces({a, b});
  ASSERT_TRUE(merged.ok()) << merged.status();
  for (const Span& s : merged->spans) {
    if (s.stage == 1 && s.lane == Lane::kCompute && s.kind == ActionKind::kForward &&
        s.microbatch == 0) {
      EXPECT_DOUBLE_EQ(s.begin_us, 1000 + 100);
    }
  }
}

TEST(ChromeJsonTest, MergeRefusesTheSameStageTwiceAndDifferentShapes) {
  const Trace t = Simulated(2, 2, 0);
  EXPECT_NE(
      std::string(MergeTraces({t, t}).status().message()).find("stage 0 has events in two traces"),
      std::string::npos);
  EXPECT_NE(std::string(MergeTraces({t, Simulated(2, 4, 0)}).status().message()).find("disagree"),
            std::string::npos);
  EXPECT_EQ(MergeTraces({}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ChromeJsonTest, NumbersJsonCannotHoldAreNamedNotThrown) {
  EXPECT_NE(ErrorOf("[1e999]").find("not valid JSON"), std::string::npos);
  EXPECT_NE(ErrorOf("{\"traceEvents\": [], \"x\": -1e999}").find("not valid JSON"),
            std::string::npos);
}

TEST(ChromeJsonTest, ShapesAFileCouldMakeUsAllocateWithoutBoundAreRefused) {
  for (const char* field : {"num_stages", "num_chunks", "num_microbatches"}) {
    json doc = json::parse(ToChromeJson(Simulated(2, 2, 0)));
    doc["otherData"][field] = 2000000000;
    const std::string error = ErrorOf(doc.dump());
    EXPECT_NE(error.find(field), std::string::npos) << error;
    EXPECT_NE(error.find("at most"), std::string::npos) << error;
  }
}

}  // namespace
}  // namespace stagehand::runtime::trace
