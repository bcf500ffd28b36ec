// Benchmarks of the actor runtime itself, each printed next to a baseline measured in the
// same run: (1) the cost the runtime adds per action with empty compute (P=8, M=64),
// against the bare decision logic (StageState + planner in the virtual-time simulator);
// (2) emergent overlap: a pipelined step with injected link latency against compute plus
// every transfer in sequence. Not a model benchmark (see tools/train_step_benchmark).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "actors/model_pipeline.h"
#include "runtime/simulator.h"
#include "runtime/trace/recorder.h"
#include "runtime/trace/summary.h"

namespace stagehand::actors {
namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int Overhead() {
  const int P = 8, M = 64, kSteps = 30;
  auto def = runtime::PlannerRegistry::Default().Get("1f1b");
  if (!def.ok()) return 1;
  auto pipeline = BuildSyntheticPipeline(*def, {P, M, 0}, {}, {}, false);
  if (!pipeline.ok()) {
    std::fprintf(stderr, "%s\n", std::string(pipeline.status().message()).c_str());
    return 1;
  }
  const int actions = P * M * 2;  // F and fused B per stage and microbatch
  std::vector<double> actor_us, logic_us;
  for (int step = 1; step <= kSteps; ++step) {
    auto outcome = (*pipeline)->RunStep(step);
    if (!outcome.ok()) return 1;
    actor_us.push_back(outcome->seconds * 1e6 / actions);
    auto start = std::chrono::steady_clock::now();
    auto sim = runtime::Simulate(**def, {P, M, 0}, runtime::CostModel{});
    if (!sim.ok()) return 1;
    logic_us.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
            .count() /
        actions);
  }
  const double a = Median(actor_us), l = Median(logic_us);
  std::printf(
      "runtime overhead, empty compute, 1f1b P=%d M=%d (%d compute actions, %d transfers per "
      "step)\n",
      P, M, actions, 2 * (P - 1) * M);
  std::printf("  actor runtime   median %.2f us per action (step wall time / actions)\n", a);
  std::printf("  decision logic  median %.2f us per action (StageState + planner, simulator)\n", l);
  std::printf("  ratio actor/logic %.1fx\n", a / l);
  return 0;
}

int Overlap() {
  const int P = 4, M = 8;
  runtime::SyntheticDurations d;
  d.forward_us = 2000;
  d.backward_input_us = 2000;
  d.backward_weight_us = 2000;
  d.payload_floats = 1024;
  auto def = runtime::PlannerRegistry::Default().Get("1f1b");
  if (!def.ok()) return 1;
  std::printf("overlap, 1f1b P=%d M=%d, F=2 ms, B=4 ms, link latency 2 ms per transfer\n", P, M);
  for (double latency : {0.0, 2000.0}) {
    auto pipeline = BuildSyntheticPipeline(*def, {P, M, 0}, d, LinkModel{latency, 0.0}, false);
    if (!pipeline.ok()) return 1;
    std::vector<double> step_s, serial_s;
    for (int step = 1; step <= 6; ++step) {
      auto outcome = (*pipeline)->RunStep(step);
      if (!outcome.ok()) return 1;
      if (step == 1) continue;
      double compute = 0;
      for (double b : outcome->busy_seconds) compute += b;
      step_s.push_back(outcome->seconds);
      serial_s.push_back(compute + 2 * (P - 1) * M * latency * 1e-6);
    }
    const double s = Median(step_s), serial = Median(serial_s);
    std::printf(
        "  latency %4.0f us: step %.1f ms, compute + transfers in sequence %.1f ms, ratio %.2f\n",
        latency, s * 1e3, serial * 1e3, s / serial);
  }
  return 0;
}

// (3) The lane's depth (1f1b and zb_h1): the idle gap between an action and the next one, already
// ready, on a stage's compute lane (runtime/trace/summary.h's lane gap), and the step time, with
// the next action dispatched only after the running one's completion message (depth 1) against
// queued behind it (depth 2). Rounds alternate between the two; medians over the timed steps.
int LaneDepth(const char* name) {
  const int P = 4, M = 8, kRounds = 3, kSteps = 6;
  runtime::SyntheticDurations d;
  d.forward_us = 300;
  d.backward_input_us = 300;
  d.backward_weight_us = 300;
  d.payload_floats = 1024;
  auto def = runtime::PlannerRegistry::Default().Get(name);
  if (!def.ok()) return 1;
  std::map<int, std::vector<double>> gaps, steps;
  for (int round = 0; round < kRounds; ++round) {
    for (int depth : {1, 2}) {
      runtime::trace::TraceRecorder recorder("lane_depth");
      auto pipeline =
          BuildSyntheticPipeline(*def, {P, M, 0}, d, LinkModel{}, false, &recorder, depth);
      if (!pipeline.ok()) {
        std::fprintf(stderr, "%s\n", std::string(pipeline.status().message()).c_str());
        return 1;
      }
      for (int step = 1; step <= kSteps; ++step) {
        auto outcome = (*pipeline)->RunStep(step);
        if (!outcome.ok()) return 1;
        if (step > 1) steps[depth].push_back(outcome->seconds);
      }
      runtime::trace::Trace trace = recorder.Collect();
      trace.spans.erase(std::remove_if(trace.spans.begin(), trace.spans.end(),
                                       [](const runtime::trace::Span& s) { return s.step == 1; }),
                        trace.spans.end());
      for (double gap : runtime::trace::LaneGaps(trace)) gaps[depth].push_back(gap);
    }
  }
  std::printf(
      "lane depth, %s P=%d M=%d, F=I=W=300 us (sleeps), %d rounds x %d timed steps, "
      "alternating\n",
      name, P, M, kRounds, kSteps - 1);
  for (int depth : {1, 2}) {
    std::printf("  depth %d: lane gap median %.1f us (%zu pairs), step %.2f ms\n", depth,
                Median(gaps[depth]), gaps[depth].size(), Median(steps[depth]) * 1e3);
  }
  std::printf("  ratio depth 2 / depth 1: lane gap %.2f, step time %.3f\n",
              Median(gaps[2]) / Median(gaps[1]), Median(steps[2]) / Median(steps[1]));
  return 0;
}

}  // namespace
}  // namespace stagehand::actors

int main() {
  if (int rc = stagehand::actors::Overhead(); rc != 0) return rc;
  if (int rc = stagehand::actors::Overlap(); rc != 0) return rc;
  for (const char* planner : {"1f1b", "zb_h1"}) {
    if (int rc = stagehand::actors::LaneDepth(planner); rc != 0) return rc;
  }
  return 0;
}
