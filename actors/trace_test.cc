// Tests of tracing in the actor runtime: every actor event is recorded once, with sends
// matched to receives; the busy fractions agree with RunStep's; and a run with known
// durations and link latency runs the simulator's timeline (whose bubble and overlap
// summary_test checks against the closed forms), never earlier. No wall-clock thresholds.
#include <algorithm>
#include <cstdio>
#include <map>
#include <vector>

#include "actors/model_pipeline.h"
#include "gtest/gtest.h"
#include "runtime/simulator.h"
#include "runtime/trace/chrome_json.h"
#include "runtime/trace/from_simulation.h"
#include "runtime/trace/recorder.h"
#include "runtime/trace/summary.h"

namespace stagehand::actors {
namespace {

using runtime::ActionKind;
using runtime::trace::Lane;
using runtime::trace::Span;
using runtime::trace::SpanLabel;
using runtime::trace::Trace;
using runtime::trace::TraceRecorder;

const runtime::PlannerDefinition* Planner(const char* name) {
  auto def = runtime::PlannerRegistry::Default().Get(name);
  EXPECT_TRUE(def.ok()) << def.status();
  return *def;
}

TEST(TraceTest, EveryActorEventIsRecordedOnce) {
  const int P = 4, M = 8, kSteps = 2;
  runtime::SyntheticDurations d;
  d.payload_floats = 256;
  TraceRecorder recorder("test");
  auto pipeline = BuildSyntheticPipeline(Planner("1f1b"), {P, M, 0}, d, LinkModel{100.0, 0.0},
                                         false, &recorder);
  ASSERT_TRUE(pipeline.ok()) << pipeline.status();
  for (int step = 1; step <= kSteps; ++step) ASSERT_TRUE((*pipeline)->RunStep(step).ok());
  const Trace trace = recorder.Collect();
  EXPECT_EQ(trace.num_stages, P);
  EXPECT_EQ(trace.num_microbatches, M);
  ASSERT_EQ(trace.steps.size(), 2u);
  std::map<std::pair<Lane, ActionKind>, int> counts;
  for (const Span& s : trace.spans) {
    ++counts[{s.lane, s.kind}];
    EXPECT_GE(s.end_us, s.begin_us);
    EXPECT_TRUE(s.step == 1 || s.step == 2);
    if (s.lane == Lane::kSend) {
      EXPECT_EQ(s.bytes, 256 * 4);
      // The link's injected latency is in the send's span.
      EXPECT_GE(s.duration_us(), 99.0);
    }
  }
  EXPECT_EQ((counts[{Lane::kCompute, ActionKind::kForward}]), kSteps * P * M);
  EXPECT_EQ((counts[{Lane::kCompute, ActionKind::kBackward}]), kSteps * P * M);
  EXPECT_EQ((counts[{Lane::kCompute, ActionKind::kOptimizer}]), kSteps * P * 3);
  EXPECT_EQ((counts[{Lane::kSend, ActionKind::kSendForward}]), kSteps * (P - 1) * M);
  EXPECT_EQ((counts[{Lane::kSend, ActionKind::kSendBackward}]), kSteps * (P - 1) * M);
  EXPECT_EQ((counts[{Lane::kRecv, ActionKind::kRecvForward}]), kSteps * (P - 1) * M);
  EXPECT_EQ((counts[{Lane::kRecv, ActionKind::kRecvBackward}]), kSteps * (P - 1) * M);
  // Each receive starts with its send and ends after the send's delivery.
  std::map<uint64_t, const Span*> sends;
  for (const Span& s : trace.spans) {
    if (s.lane == Lane::kSend) sends[runtime::trace::TransferFlowId(s)] = &s;
  }
  for (const Span& s : trace.spans) {
    if (s.lane != Lane::kRecv) continue;
    auto it = sends.find(runtime::trace::TransferFlowId(s));
    ASSERT_NE(it, sends.end()) << runtime::trace::SpanLabel(s);
    EXPECT_EQ(s.begin_us, it->second->begin_us);
    EXPECT_GE(s.end_us, it->second->end_us - 1.0);  // delayed_send has microsecond resolution
  }
  // 1F1B holds at most P - s activations on stage s; every compute action has its wait.
  auto summary = runtime::trace::Summarize(trace);
  ASSERT_TRUE(summary.ok()) << summary.status();
  for (int s = 0; s < P; ++s)
    EXPECT_EQ(summary->stages[s].peak_activations, P - s) << "stage " << s;
  for (const Span& s : trace.spans) {
    if (s.lane == Lane::kCompute && runtime::IsCompute(s.kind)) {
      EXPECT_GE(s.wait_us, 0.0);
    }
  }
}

TEST(TraceTest, BusyFractionsAgreeWithRunStep) {
  const int P = 4, M = 8;
  runtime::SyntheticDurations d;
  d.forward_us = 300;
  d.backward_input_us = 300;
  d.backward_weight_us = 300;
  TraceRecorder recorder;
  auto pipeline = BuildSyntheticPipeline(Planner("1f1b"), {P, M, 0}, d, {}, false, &recorder);
  ASSERT_TRUE(pipeline.ok()) << pipeline.status();
  std::vector<double> busy(P, 0.0);
  double seconds = 0;
  for (int step = 1; step <= 3; ++step) {
    auto outcome = (*pipeline)->RunStep(step);
    ASSERT_TRUE(outcome.ok()) << outcome.status();
    seconds += outcome->seconds;
    for (int s = 0; s < P; ++s) busy[s] += outcome->busy_seconds[s];
  }
  // Through the file format, as tools/trace reads it.
  auto trace = runtime::trace::FromChromeJson(runtime::trace::ToChromeJson(recorder.Collect()));
  ASSERT_TRUE(trace.ok()) << trace.status();
  auto summary = runtime::trace::Summarize(*trace);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->num_steps, 3);
  EXPECT_NEAR(summary->step_time_us * 3, seconds * 1e6, 0.01);
  for (int s = 0; s < P; ++s) {
    EXPECT_NEAR(summary->stages[s].busy_fraction, busy[s] / seconds, 1e-5) << "stage " << s;
  }
}

// The F and B spans of `stage` in `step`, in start order.
std::vector<const Span*> ComputeSpans(const Trace& trace, int stage, int64_t step) {
  std::vector<const Span*> spans;
  for (const Span& s : trace.spans) {
    if (s.lane == Lane::kCompute && s.stage == stage && s.step == step &&
        (s.kind == ActionKind::kForward || s.kind == ActionKind::kBackward)) {
      spans.push_back(&s);
    }
  }
  std::stable_sort(spans.begin(), spans.end(),
                   [](const Span* a, const Span* b) { return a->begin_us < b->begin_us; });
  return spans;
}

// GPipe, P=4, M=8, F = f, fused backward = b = 2f, every transfer tau = f/4 of link latency.
// The simulator runs the same planner on the same costs in virtual time, and
// runtime/trace/summary_test checks that its timeline has the closed-form bubble and
// overlap. The actor run must be that timeline, only later: each stage runs the same
// actions in the same order, no action lasts less than its cost (a sleep never ends early)
// and none starts before its simulated start (it waits for its stage's previous action and
// for its input, which arrives no sooner than tau after its producer ended). So its pipeline
// window is at least the closed form (M + P - 1)(f + b) + 2(P - 1)tau. These hold however
// loaded the machine is; how much later the run is depends on the load, so it is printed,
// not checked.
TEST(TraceTest, KnownDurationsRunTheSimulatedTimelineNeverEarlier) {
  const int P = 4, M = 8;
  const double f = 20000, b = 2 * f, tau = f / 4;  // microseconds
  // delayed_send rounds each delivery down to a microsecond: 1 us per transfer on a chain.
  const double slack_us = 2 * (P - 1) + 1;
  runtime::SyntheticDurations d;
  d.forward_us = f;
  d.backward_input_us = b / 2;
  d.backward_weight_us = b / 2;
  d.payload_floats = 1024;
  TraceRecorder recorder;
  const runtime::PlannerDefinition* gpipe = Planner("gpipe");
  auto pipeline =
      BuildSyntheticPipeline(gpipe, {P, M, 0}, d, LinkModel{tau, 0.0}, false, &recorder);
  ASSERT_TRUE(pipeline.ok()) << pipeline.status();
  for (int step = 1; step <= 2; ++step) ASSERT_TRUE((*pipeline)->RunStep(step).ok());
  const Trace trace = recorder.Collect();

  auto spec = gpipe->MakeSpec({P, M, 0});
  ASSERT_TRUE(spec.ok()) << spec.status();
  runtime::CostModel cost;  // F = 1, fused B = 2
  cost.transfer = tau / f;
  auto sim = runtime::SimulateSpec(*gpipe, *spec, cost);
  ASSERT_TRUE(sim.ok()) << sim.status();
  const Trace simulated = runtime::trace::TraceFromSimulation(*sim, *spec, {1, f, 0});

  ASSERT_EQ(trace.steps.size(), 2u);
  for (const runtime::trace::StepSpan& step : trace.steps) {
    for (int s = 0; s < P; ++s) {
      SCOPED_TRACE(testing::Message() << "step " << step.step << " stage " << s);
      const std::vector<const Span*> ran = ComputeSpans(trace, s, step.step);
      const std::vector<const Span*> planned = ComputeSpans(simulated, s, 1);
      ASSERT_EQ(planned.size(), 2u * M);  // M forwards, M backwards
      ASSERT_EQ(ran.size(), planned.size());
      for (size_t i = 0; i < ran.size(); ++i) {
        const Span& actual = *ran[i];
        const Span& expected = *planned[i];
        ASSERT_EQ(SpanLabel(actual), SpanLabel(expected));
        EXPECT_GE(actual.duration_us(), expected.duration_us()) << SpanLabel(actual);
        EXPECT_GE(actual.begin_us - step.begin_us, expected.begin_us - slack_us)
            << SpanLabel(actual);
      }
    }
  }
  auto summary = runtime::trace::Summarize(trace);
  ASSERT_TRUE(summary.ok()) << summary.status();
  const double window = (M + P - 1) * (f + b) + 2 * (P - 1) * tau;
  EXPECT_GE(summary->pipeline_window_us, window - slack_us);
  std::printf("closed-form window %.0f us; this run (later by the machine's load):\n%s", window,
              runtime::trace::FormatSummary(*summary).c_str());
}

TEST(TraceTest, DeterministicModeRecordsToo) {
  TraceRecorder recorder;
  auto pipeline = BuildSyntheticPipeline(Planner("1f1b"), {2, 2, 0}, {}, {}, true, &recorder);
  ASSERT_TRUE(pipeline.ok()) << pipeline.status();
  EXPECT_EQ(recorder.num_stages(), 2);
}

TEST(TraceTest, OneRecorderServesOnePipelineShape) {
  TraceRecorder recorder;
  auto first = BuildSyntheticPipeline(Planner("1f1b"), {2, 4, 0}, {}, {}, false, &recorder);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = BuildSyntheticPipeline(Planner("1f1b"), {4, 4, 0}, {}, {}, false, &recorder);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace stagehand::actors
