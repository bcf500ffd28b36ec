// Simulator speed: compute actions simulated per second (wall and CPU time) for a few planners
// at P=64, M=1024 under unit costs, and the time of one 1,024-stage x 4,096-microbatch step;
// and, apart, the time of the planner's MakeSpec (where zb_h2 / zb_v simulate their plan).
// Not a planner comparison: tools/simulate and tools/simulate_table.sh compare planners.
#include <time.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "runtime/planner.h"
#include "runtime/simulator.h"

ABSL_FLAG(std::string, planners, "1f1b,zb_v,adaptive", "planners to time");
ABSL_FLAG(int, stages, 64, "P");
ABSL_FLAG(int, microbatches, 1024, "M");
ABSL_FLAG(int, repeats, 3, "runs per planner; the best is reported");
ABSL_FLAG(bool, scale, true, "also time 1f1b at 1024 stages x 4096 microbatches");

namespace stagehand::runtime {
namespace {

double CpuSeconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

double WallSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// One planner, `repeats` times; prints the best run. False on a simulator error.
bool Time(const std::string& name, const PlannerOptions& options, int repeats) {
  absl::StatusOr<const PlannerDefinition*> definition = PlannerRegistry::Default().Get(name);
  if (!definition.ok()) {
    std::fprintf(stderr, "%s\n", std::string(definition.status().message()).c_str());
    return false;
  }
  // MakeSpec once, timed apart: zb_h2 and zb_v simulate their unit-cost plan in it (a
  // frozen plan, reused by every simulation of the same spec after it), adaptive its unit
  // check.
  const double spec_wall0 = WallSeconds(), spec_cpu0 = CpuSeconds();
  absl::StatusOr<StepSpec> spec = (*definition)->MakeSpec(options);
  const double spec_wall = WallSeconds() - spec_wall0, spec_cpu = CpuSeconds() - spec_cpu0;
  if (!spec.ok()) {
    std::fprintf(stderr, "%s\n", std::string(spec.status().message()).c_str());
    return false;
  }
  double best_wall = 1e30, best_cpu = 1e30;
  int64_t actions = 0;
  for (int r = 0; r < repeats; ++r) {
    ConstantCosts costs{CostModel()};
    SimulationOptions sim;
    sim.record_timeline = false;
    const double wall0 = WallSeconds(), cpu0 = CpuSeconds();
    absl::StatusOr<SimResult> result = SimulateWithCosts(**definition, *spec, costs, sim);
    const double wall = WallSeconds() - wall0, cpu = CpuSeconds() - cpu0;
    if (!result.ok()) {
      std::fprintf(stderr, "%s\n", std::string(result.status().message()).c_str());
      return false;
    }
    actions = result->num_actions;
    best_wall = std::min(best_wall, wall);
    best_cpu = std::min(best_cpu, cpu);
  }
  std::printf(
      "%-11s P=%-5d M=%-5d %10lld actions  wall %7.3f s  cpu %7.3f s  %6.2f M actions/s "
      "(wall)  %6.2f M actions/s (cpu)  MakeSpec wall %6.3f s cpu %6.3f s\n",
      name.c_str(), options.num_stages, options.num_microbatches, static_cast<long long>(actions),
      best_wall, best_cpu, actions / best_wall / 1e6, actions / best_cpu / 1e6, spec_wall,
      spec_cpu);
  return true;
}

}  // namespace
}  // namespace stagehand::runtime

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  namespace r = stagehand::runtime;
  bool ok = true;
  std::string list = absl::GetFlag(FLAGS_planners);
  size_t start = 0;
  while (start <= list.size()) {
    const size_t comma = list.find(',', start);
    const std::string name =
        list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!name.empty()) {
      ok &= r::Time(name, {absl::GetFlag(FLAGS_stages), absl::GetFlag(FLAGS_microbatches)},
                    absl::GetFlag(FLAGS_repeats));
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (absl::GetFlag(FLAGS_scale)) ok &= r::Time("1f1b", {1024, 4096}, 1);
  return ok ? 0 : 1;
}
