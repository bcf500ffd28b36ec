// Benchmarks of the actor runtime itself, each printed next to a baseline measured in the
// same run: (1) the cost the runtime adds per action with empty compute (P=8, M=64),
// against the bare decision logic (StageState + planner in the virtual-time simulator);
// (2) emergent overlap: a pipelined step with injected link latency against compute plus
// every transfer in sequence. Not a model benchmark (see tools/train_step_benchmark).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "actors/model_pipeline.h"
#include "runtime/simulator.h"

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

}  // namespace
}  // namespace stagehand::actors

int main() {
  if (int rc = stagehand::actors::Overhead(); rc != 0) return rc;
  return stagehand::actors::Overlap();
}
