// Tests of the trace summary on simulator traces, whose durations are known exactly: the
// bubble, overlap, exposed transfer and critical path equal their closed forms.
#include "runtime/trace/summary.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/planner.h"
#include "runtime/simulator.h"
#include "runtime/trace/from_simulation.h"

namespace stagehand::runtime::trace {
namespace {

// Unit costs F = 1, fused backward = 2, every transfer `tau`; one unit = 1000 us.
Trace Simulated(const char* planner, int P, int M, double tau) {
  auto def = PlannerRegistry::Default().Get(planner);
  EXPECT_TRUE(def.ok()) << def.status();
  auto spec = (*def)->MakeSpec({P, M, 0});
  EXPECT_TRUE(spec.ok()) << spec.status();
  CostModel cost;
  cost.transfer = tau;
  auto sim = SimulateSpec(**def, *spec, cost);
  EXPECT_TRUE(sim.ok()) << sim.status();
  return TraceFromSimulation(*sim, *spec);
}

constexpr double kUnit = 1000;

TEST(SummaryTest, OneFOneBUnitCostBubbleIsPMinusOneOverMPlusPMinusOne) {
  auto s = Summarize(Simulated("1f1b", 4, 8, 0));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_DOUBLE_EQ(s->bubble_fraction, 3.0 / 11);
  EXPECT_DOUBLE_EQ(s->step_time_us, 33 * kUnit);  // (M + P - 1)(f + b)
  for (const StageSummary& st : s->stages) {
    EXPECT_DOUBLE_EQ(st.bubble_fraction, 3.0 / 11) << "stage " << st.stage;
    EXPECT_DOUBLE_EQ(st.busy_fraction, 8.0 / 11) << "stage " << st.stage;
    EXPECT_EQ(st.peak_activations, 4 - st.stage);  // 1F1B holds P - s
    EXPECT_EQ(st.transfer_us, 0);
  }
  EXPECT_EQ(s->overlap_fraction, 0);
}

TEST(SummaryTest, BubbleClosedFormAcrossShapes) {
  for (const char* planner : {"1f1b", "gpipe"}) {
    for (auto [P, M] : {std::pair{2, 4}, {4, 8}, {8, 16}, {8, 3}}) {
      auto s = Summarize(Simulated(planner, P, M, 0));
      ASSERT_TRUE(s.ok()) << s.status();
      EXPECT_NEAR(s->bubble_fraction, double(P - 1) / (M + P - 1), 1e-12)
          << planner << " P=" << P << " M=" << M;
    }
  }
}

// The transfers-exposed phase (--log_timers) on GPipe with transfers of tau: a stage's first
// F waits tau for its activation once its producer finished it, and its first B tau for its
// gradient; every later input arrives as the lane frees (equal stage speeds), so stage 0 and
// stage P-1 expose tau, a middle stage 2 tau. Without transfer time nothing is exposed.
TEST(SummaryTest, PhaseTimesTransfersExposedIsTheIdleWhileAnInputWasInFlight) {
  constexpr double kTau = 0.5;
  const std::vector<StagePhaseTimes> times = PhaseTimesOf(Simulated("gpipe", 4, 8, kTau));
  ASSERT_EQ(times.size(), 4u);
  for (const StagePhaseTimes& t : times) {
    const double expected = (t.stage == 0 || t.stage == 3 ? 1 : 2) * kTau * kUnit;
    EXPECT_NEAR(t.transfers_exposed_us, expected, 1e-6) << "stage " << t.stage;
    EXPECT_DOUBLE_EQ(t.forward_us, 8 * kUnit);
  }
  for (const StagePhaseTimes& t : PhaseTimesOf(Simulated("gpipe", 4, 8, 0))) {
    EXPECT_EQ(t.transfers_exposed_us, 0) << "stage " << t.stage;
  }
  EXPECT_NE(FormatPhaseTimes(times).find("  transfers exposed        3.00 (0.50, 1.00)\n"),
            std::string::npos)
      << FormatPhaseTimes(times);
}

// A batch-size ramp-up's trace: step 1 at M = 2, step 2 at M = 4, on one timeline. The
// summary shows each step's M, and the range in its header.
TEST(SummaryTest, EachStepOfARampUpShowsItsOwnMicrobatchCount) {
  Trace trace = Simulated("gpipe", 4, 2, 0);
  const Trace second = Simulated("gpipe", 4, 4, 0);
  double end = 0;
  for (Span& s : trace.spans) {
    s.step = 1;
    end = std::max(end, s.end_us);
  }
  for (Span s : second.spans) {
    s.step = 2;
    s.begin_us += end;
    s.end_us += end;
    trace.spans.push_back(s);
  }
  trace.steps.clear();
  trace.num_microbatches = 4;
  auto s = Summarize(trace);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->step_times.size(), 2u);
  EXPECT_EQ(s->step_times[0].microbatches, 2);
  EXPECT_EQ(s->step_times[1].microbatches, 4);
  EXPECT_EQ(MicrobatchRange(*s), std::make_pair(2, 4));
  const std::string text = FormatSummary(*s);
  EXPECT_NE(text.find("trace: 4 stages, 4 chunks, 2..4 microbatches per step (a batch-size "
                      "ramp-up), 2 steps"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("M=2  (warm-up, excluded)\n"), std::string::npos) << text;
  EXPECT_NE(text.find("M=4\n"), std::string::npos) << text;
  // One M: no M column.
  EXPECT_EQ(FormatSummary(*Summarize(second)).find("M="), std::string::npos);
}

// GPipe with transfers of tau <= f/2: each stage's first receive of a phase and last send
// of a phase are exposed (2 tau on an end stage, 4 tau on a middle one), every other
// transfer hides under compute. Each transfer counts on both of its stages.
TEST(SummaryTest, GpipeTransfersGiveClosedFormOverlapAndExposedTime) {
  for (auto [P, M] : {std::pair{2, 4}, {4, 8}, {8, 16}}) {
    for (double tau : {0.25, 0.5}) {
      auto s = Summarize(Simulated("gpipe", P, M, tau));
      ASSERT_TRUE(s.ok()) << s.status();
      const double window = (M + P - 1) * 3 + 2 * (P - 1) * tau;
      SCOPED_TRACE(testing::Message() << "P=" << P << " M=" << M << " tau=" << tau);
      EXPECT_NEAR(s->step_time_us, window * kUnit, 1e-6);
      EXPECT_NEAR(s->bubble_fraction, 1 - 3.0 * M / window, 1e-12);
      EXPECT_NEAR(s->exposed_transfer_us, 4 * (P - 1) * tau * kUnit, 1e-6);
      EXPECT_NEAR(s->hidden_transfer_us, 4 * (P - 1) * (M - 1) * tau * kUnit, 1e-6);
      EXPECT_NEAR(s->overlap_fraction, 1 - 1.0 / M, 1e-12);
      EXPECT_NEAR(s->stages.front().exposed_transfer_us, 2 * tau * kUnit, 1e-6);
      if (P > 2) {
        EXPECT_NEAR(s->stages[1].exposed_transfer_us, 4 * tau * kUnit, 1e-6);
      }
    }
  }
}

// The critical path of GPipe with transfers: F down the pipe (P - 1 transfers), the last
// stage's M forwards and M backwards, the gradient up the pipe (P - 1 transfers), stage
// 0's remaining backwards: (M + P - 1)(f + b) of compute and 2(P - 1) tau of transfers.
TEST(SummaryTest, CriticalPathAddsUpToTheStep) {
  const int P = 4, M = 8;
  const double tau = 0.5;
  auto s = Summarize(Simulated("gpipe", P, M, tau));
  ASSERT_TRUE(s.ok()) << s.status();
  const CriticalPath& cp = s->critical_path;
  EXPECT_NEAR(cp.length_us, s->step_time_us, 1e-6);
  EXPECT_NEAR(cp.compute_us, (M + P - 1) * 3 * kUnit, 1e-6);
  EXPECT_NEAR(cp.transfer_us, 2 * (P - 1) * tau * kUnit, 1e-6);
  EXPECT_NEAR(cp.wait_us, 0, 1e-6);
  ASSERT_FALSE(cp.links.empty());
  EXPECT_EQ(cp.links.front().stage, 0);
  EXPECT_EQ(cp.links.front().kind, ActionKind::kForward);
  EXPECT_EQ(cp.links.back().stage, 0);
  EXPECT_EQ(cp.links.back().kind, ActionKind::kBackward);
  EXPECT_EQ(cp.links.back().microbatch, M - 1);
  // Links are in time order and do not overlap.
  for (size_t i = 1; i < cp.links.size(); ++i) {
    EXPECT_LE(cp.links[i - 1].end_us, cp.links[i].begin_us + 1e-6);
  }
  const std::string text = FormatSummary(*s);
  EXPECT_NE(text.find("critical path of step 1"), std::string::npos) << text;
  EXPECT_NE(text.find("s2 -> s3  activation"), std::string::npos) << text;
}

TEST(SummaryTest, WaitsAreTheTimeSomeReadyActionWaited) {
  // GPipe, no transfers: stage 0's F of microbatch k is ready at 0 and starts at k. The
  // waits overlap: stage 0 had a ready action waiting from 0 to 7, 7 units, not 0+1+...+7.
  auto s = Summarize(Simulated("gpipe", 4, 8, 0));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_DOUBLE_EQ(s->stages[0].wait_us, 7 * kUnit);
}

// `lengths` as consecutive one-stage steps of one F each.
Trace Steps(const std::vector<double>& lengths) {
  Trace trace;
  trace.num_stages = trace.num_chunks = trace.num_microbatches = 1;
  double t = 0;
  for (size_t i = 0; i < lengths.size(); ++i) {
    Span span;
    span.step = static_cast<int64_t>(i) + 1;
    span.begin_us = t;
    span.end_us = t + lengths[i];
    trace.spans.push_back(span);
    trace.steps.push_back(StepSpan{span.step, t, t + lengths[i]});
    t += lengths[i];
  }
  return trace;
}

// One stage: F0 [0, 10], then F1 ready at 5 starting at 12 (a 2 us lane gap), B0 ready at 30
// starting at 30 after F1 ended at 22 (it waited for its input: no lane gap), then W0 ready at
// 40 when B0 ended, starting at 40.5 (0.5 us).
TEST(SummaryTest, LaneGapsCountOnlyActionsThatWereReadyBeforeTheLaneFreed) {
  Trace trace;
  trace.num_stages = trace.num_chunks = 1;
  trace.num_microbatches = 2;
  trace.steps.push_back(StepSpan{1, 0, 50});
  auto add = [&](ActionKind kind, int mb, double begin, double end, double ready) {
    Span span;
    span.kind = kind;
    span.microbatch = mb;
    span.step = 1;
    span.begin_us = begin;
    span.end_us = end;
    span.wait_us = begin - ready;
    trace.spans.push_back(span);
  };
  add(ActionKind::kForward, 0, 0, 10, 0);
  add(ActionKind::kForward, 1, 12, 22, 5);
  add(ActionKind::kBackwardInput, 0, 30, 40, 30);
  add(ActionKind::kBackwardWeight, 0, 40.5, 45, 40);
  std::vector<double> gaps = LaneGaps(trace);
  std::sort(gaps.begin(), gaps.end());
  EXPECT_EQ(gaps, (std::vector<double>{0.5, 2.0}));
  auto s = Summarize(trace);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->lane_gaps, 2);
  EXPECT_DOUBLE_EQ(s->lane_gap_median_us, 2.0);
  EXPECT_NE(FormatSummary(*s).find("lane gap: median 2.0 us"), std::string::npos)
      << FormatSummary(*s);
}

TEST(SummaryTest, StepMedianAndSpreadLeaveOutTheWarmUpStep) {
  auto s = Summarize(Steps({9000, 1000, 3000, 2000}));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->step_statistics.warmup_steps, 1);
  EXPECT_EQ(s->step_statistics.num_steps, 3);
  EXPECT_DOUBLE_EQ(s->step_statistics.median_us, 2000);
  EXPECT_DOUBLE_EQ(s->step_statistics.min_us, 1000);
  EXPECT_DOUBLE_EQ(s->step_statistics.max_us, 3000);
  EXPECT_TRUE(s->step_times[0].warmup);
  const std::string text = FormatSummary(*s);
  EXPECT_NE(text.find("median step time 2.000 ms, spread 2.000 ms"), std::string::npos) << text;
  EXPECT_NE(text.find("(warm-up, excluded)"), std::string::npos) << text;
  SummaryOptions all;
  all.warmup_steps = 0;
  EXPECT_DOUBLE_EQ(Summarize(Steps({9000, 1000, 3000, 2000}), all)->step_statistics.median_us,
                   2500);
  // A single step is never left out.
  EXPECT_EQ(Summarize(Steps({5000}))->step_statistics.num_steps, 1);
}

TEST(SummaryTest, ComparisonSaysWhetherTheDifferenceExceedsNoise) {
  auto fast = Summarize(Steps({5000, 1000, 1100, 1050}));
  auto slow = Summarize(Steps({5000, 2000, 2100, 2050}));
  auto overlapping = Summarize(Steps({5000, 1080, 1500, 1000}));
  ASSERT_TRUE(fast.ok() && slow.ok() && overlapping.ok());
  const std::string differ = FormatComparison(*fast, "a.json", *slow, "b.json");
  EXPECT_NE(differ.find("exceeds run-to-run noise"), std::string::npos) << differ;
  EXPECT_NE(differ.find("a.json is faster"), std::string::npos) << differ;
  EXPECT_NE(differ.find("b.json / a.json median step time: 1.952"), std::string::npos) << differ;
  const std::string same = FormatComparison(*fast, "a", *overlapping, "c");
  EXPECT_NE(same.find("within run-to-run noise"), std::string::npos) << same;
  auto short_run = Summarize(Steps({5000, 1000}));
  EXPECT_NE(FormatComparison(*fast, "a", *short_run, "d").find("too few steps"), std::string::npos);
}

TEST(SummaryTest, FormatHasTheLaunchStyleBusyLine) {
  auto s = Summarize(Simulated("1f1b", 4, 8, 0));
  ASSERT_TRUE(s.ok()) << s.status();
  const std::string text = FormatSummary(*s);
  EXPECT_NE(text.find("busy s0 0.73 s1 0.73 s2 0.73 s3 0.73"), std::string::npos) << text;
  EXPECT_NE(text.find("bubble 0.2727"), std::string::npos) << text;
}

// One stage, one chunk, one step [0, 100] of F0 (whole) and an overlapped pair: F1 and B0
// as MoE sub-steps (one layer each), dispatch / combine on the a2a lane:
//   compute  F0 [0,10]  F1 attn [10,20]  B0 rest [20,35]  F1 experts [40,50]
//            B0 experts [50,65]  F1 rest [70,80]  B0 attn [80,95]
//   a2a      F1 dispatch [20,40]  B0 combine [40,50]  F1 combine [50,70]  B0 dispatch [70,80]
Trace OverlappedPair() {
  Trace trace;
  trace.num_stages = trace.num_chunks = 1;
  trace.num_microbatches = 2;
  trace.steps.push_back(StepSpan{1, 0, 100});
  auto add = [&](Lane lane, ActionKind kind, int mb, SubStepKind part, double b, double e,
                 bool whole = false) {
    Span s;
    s.lane = lane;
    s.kind = kind;
    s.microbatch = mb;
    s.step = 1;
    s.layer = whole ? -1 : 0;
    s.part = part;
    s.begin_us = b;
    s.end_us = e;
    trace.spans.push_back(s);
  };
  const ActionKind F = ActionKind::kForward, B = ActionKind::kBackward;
  const Lane C = Lane::kCompute, A = Lane::kAllToAll;
  add(C, F, 0, SubStepKind::kRest, 0, 10, /*whole=*/true);
  add(C, F, 1, SubStepKind::kAttention, 10, 20);
  add(C, B, 0, SubStepKind::kRest, 20, 35);
  add(C, F, 1, SubStepKind::kExperts, 40, 50);
  add(C, B, 0, SubStepKind::kExperts, 50, 65);
  add(C, F, 1, SubStepKind::kRest, 70, 80);
  add(C, B, 0, SubStepKind::kAttention, 80, 95);
  add(A, F, 1, SubStepKind::kDispatch, 20, 40);
  add(A, B, 0, SubStepKind::kCombine, 40, 50);
  add(A, F, 1, SubStepKind::kCombine, 50, 70);
  add(A, B, 0, SubStepKind::kDispatch, 70, 80);
  ComputeWaits(&trace);
  return trace;
}

TEST(SummaryTest, AllToAllTimeAndTheShareHiddenUnderTheStagesCompute) {
  // a2a 20 + 10 + 20 + 10 = 60; under compute [0,35] u [40,65] u [70,95]: 15 + 10 + 15 + 10.
  auto s = Summarize(OverlappedPair());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_DOUBLE_EQ(s->stages[0].a2a_us, 60);
  EXPECT_DOUBLE_EQ(s->stages[0].hidden_a2a_us, 50);
  EXPECT_DOUBLE_EQ(s->a2a_us, 60);
  EXPECT_DOUBLE_EQ(s->a2a_hidden_fraction(), 50.0 / 60);
  EXPECT_DOUBLE_EQ(s->stages[0].compute_us, 85);  // sub-steps are compute; a2a is not
  EXPECT_EQ(s->stages[0].transfer_us, 0);         // nor a transfer
  const std::string text = FormatSummary(*s);
  EXPECT_NE(text.find("all-to-all (MoE dispatch / combine) 0.060 ms per step summed over "
                      "stages, 0.050 ms hidden under the same stage's compute: 83.3% hidden"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("s0           0.060       0.010    83.3%"), std::string::npos) << text;
  auto none = Summarize(Simulated("1f1b", 2, 2, 0));
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(FormatAllToAll(*none), "");
}

TEST(SummaryTest, SubStepsWaitFromTheSubStepBeforeThemNotFromTheirActionsInputs) {
  // F1 attn waits 10 (F0 holds the lane), B0 rest 10 (ready when F0 ended), B0 combine and
  // B0 dispatch 5 each (the a2a lane busy with F1's); the rest follow their predecessor at
  // once. Union: [0,20] + [35,40] + [65,70] = 30. Counting each sub-step from its action's
  // inputs would make F1 rest wait 70.
  const Trace trace = OverlappedPair();
  std::vector<double> waits;
  for (const Span& s : trace.spans) waits.push_back(s.wait_us);
  EXPECT_EQ(waits, (std::vector<double>{0, 10, 10, 0, 0, 0, 0, 0, 5, 0, 5}));
  auto s = Summarize(trace);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_DOUBLE_EQ(s->stages[0].wait_us, 30);
}

TEST(SummaryTest, CriticalPathWalksSubStepsAcrossTheComputeAndAllToAllLanes) {
  // Back from B0 attn: F1 rest (lane, ties go to the lane), F1 combine (its predecessor),
  // B0 combine (a2a lane, a tie), F1 dispatch (a2a lane), F1 attn, F0.
  auto s = Summarize(OverlappedPair());
  ASSERT_TRUE(s.ok()) << s.status();
  const CriticalPath& cp = s->critical_path;
  EXPECT_DOUBLE_EQ(cp.length_us, 95);
  EXPECT_DOUBLE_EQ(cp.compute_us, 45);
  EXPECT_DOUBLE_EQ(cp.a2a_us, 50);
  EXPECT_DOUBLE_EQ(cp.wait_us, 0);
  std::vector<std::string> links;
  for (const CriticalLink& l : cp.links) {
    links.push_back(absl::StrCat(ActionKindName(l.kind), l.microbatch, " ",
                                 l.layer < 0 ? "whole" : SubStepKindName(l.part),
                                 l.all_to_all ? " a2a" : ""));
  }
  EXPECT_EQ(links,
            (std::vector<std::string>{"F0 whole", "F1 attn", "F1 dispatch a2a", "B0 combine a2a",
                                      "F1 combine a2a", "F1 rest", "B0 attn"}));
  const std::string text = FormatSummary(*s);
  EXPECT_NE(text.find("compute 0.045 + transfers 0.000 + all-to-all 0.050 + waits 0.000; "
                      "3 actions, 0 transfers"),
            std::string::npos)
      << text;
}

TEST(SummaryTest, EmptyTraceIsAnError) {
  Trace empty;
  empty.num_stages = 2;
  EXPECT_EQ(Summarize(empty).status().code(), absl::StatusCode::kInvalidArgument);
  Trace no_stages;
  EXPECT_EQ(Summarize(no_stages).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SummaryTest, UnknownStepForTheCriticalPathIsAnError) {
  SummaryOptions options;
  options.critical_path_step = 7;
  auto s = Summarize(Simulated("1f1b", 2, 2, 0), options);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.status().message()).find("step 7"), std::string::npos);
}

}  // namespace
}  // namespace stagehand::runtime::trace
