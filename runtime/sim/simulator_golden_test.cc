// Guard for the simulator's speed work: every built-in planner, on a few (P, M, v, memory)
// cells, under unit costs, unit costs with transfers, the GPT cost model with jitter and a
// straggler, and that on 2 shared cores, must give exactly the timeline recorded before the
// simulator, stage loop and planners were made faster (issue #15): every action's stage,
// kind, chunk, microbatch, start and end, every transfer, peaks, busy times and errors, as a
// 64-bit FNV-1a fingerprint of their text (doubles in hex, so bit for bit).
// Not a test of what the plans should be (zoo_test, the planners' own tests): a change that
// is meant to change a plan updates the fingerprints here, and says why.
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "runtime/planner.h"
#include "runtime/sim/cost_model.h"
#include "runtime/simulator.h"

namespace stagehand::runtime::sim {
namespace {

struct Cell {
  const char* label;
  PlannerOptions options;
};

const Cell kCells[] = {
    {"p4m8", {4, 8}},           {"p3m7", {3, 7}},   {"p4m12i6", {4, 12, 6}},
    {"p6m16v3", {6, 16, 0, 3}}, {"p8m40", {8, 40}},
};

enum class Costs { kUnit, kUnitTransfer, kJitter, kSharedCores };
const std::pair<Costs, const char*> kCosts[] = {
    {Costs::kUnit, "unit"},
    {Costs::kUnitTransfer, "unit_transfer"},
    {Costs::kJitter, "gpt_jitter"},
    {Costs::kSharedCores, "gpt_jitter_2cores"},
};

void Mix(std::uint64_t* hash, const std::string& text) {
  for (unsigned char c : text) {
    *hash ^= c;
    *hash *= 1099511628211ull;
  }
}

std::string Hex(double value) { return absl::StrFormat("%a", value); }

std::string Fingerprint(const absl::StatusOr<SimResult>& result) {
  std::uint64_t hash = 14695981039346656037ull;
  if (!result.ok()) {
    Mix(&hash, absl::StrCat("error ", result.status().ToString()));
  } else {
    Mix(&hash, absl::StrCat(Hex(result->step_time), " ", Hex(result->bubble_fraction), " ",
                            result->num_actions, " ", result->num_transfers, "\n"));
    for (std::size_t s = 0; s < result->per_stage.size(); ++s) {
      Mix(&hash, absl::StrCat("s", s, " peak ", result->peak_inflight[s], " busy ",
                              Hex(result->stage_busy[s]), "\n"));
      for (const TimedAction& timed : result->per_stage[s]) {
        Mix(&hash, absl::StrCat(ActionToString(timed.action), " ", Hex(timed.start), " ",
                                Hex(timed.end), "\n"));
      }
    }
    for (const TimedTransfer& timed : result->transfers) {
      Mix(&hash, absl::StrCat(TransferToString(timed.transfer), " ", Hex(timed.start), " ",
                              Hex(timed.end), "\n"));
    }
  }
  return absl::StrFormat("%016" PRIx64, hash);
}

// One simulation of `name` on `cell` under `costs`, with or without its timeline.
absl::StatusOr<SimResult> Simulated(const std::string& name, const Cell& cell, Costs costs,
                                    bool timeline) {
  const PlannerDefinition* definition = *PlannerRegistry::Default().Get(name);
  absl::StatusOr<StepSpec> spec = definition->MakeSpec(cell.options);
  if (!spec.ok()) return spec.status();
  SimulationOptions options;
  options.record_timeline = timeline;
  if (costs == Costs::kUnit || costs == Costs::kUnitTransfer) {
    CostModel model;
    if (costs == Costs::kUnitTransfer) model.transfer = 0.5;
    ConstantCosts constant(model);
    return SimulateWithCosts(*definition, *spec, constant, options);
  }
  absl::StatusOr<StepCosts> step =
      EstimateStepCosts(*WorkloadPreset("launch"),
                        *DevicePreset(costs == Costs::kSharedCores ? "cpu" : "h100"), *spec);
  if (!step.ok()) return step.status();
  Variability variability;
  variability.jitter = JitterDistribution::kUniform;
  variability.spread = 0.2;
  variability.seed = 7;
  variability.straggler_stage = 1;
  variability.straggler_factor = 1.5;
  ModelCosts model(*step, variability);
  if (costs == Costs::kSharedCores) options.compute_lanes = 2;
  return SimulateWithCosts(*definition, *spec, model, options);
}

// planner/cell/costs -> fingerprint, recorded with the simulator before issue #15's changes.
const std::map<std::string, std::string>& Golden() {
  static const auto* golden = new std::map<std::string, std::string>{
#include "runtime/sim/simulator_golden.inc"
  };
  return *golden;
}

TEST(SimulatorGoldenTest, EveryPlannerKeepsItsTimelineBitForBit) {
  std::string missing;
  int compared = 0;
  for (const std::string& name : PlannerRegistry::Default().Names()) {
    for (const Cell& cell : kCells) {
      for (const auto& [costs, label] : kCosts) {
        const std::string key = absl::StrCat(name, "/", cell.label, "/", label);
        const std::string got = Fingerprint(Simulated(name, cell, costs, /*timeline=*/true));
        const auto it = Golden().find(key);
        if (it == Golden().end()) {
          absl::StrAppend(&missing, "    {\"", key, "\", \"", got, "\"},\n");
          continue;
        }
        EXPECT_EQ(got, it->second) << key << ": the simulated timeline changed";
        ++compared;
      }
    }
  }
  EXPECT_TRUE(missing.empty()) << "no fingerprint recorded for:\n" << missing;
  EXPECT_EQ(compared, static_cast<int>(Golden().size())) << "a recorded planner is gone";
}

TEST(SimulatorGoldenTest, WithoutATimelineTheTotalsAreTheSame) {
  for (const std::string& name : PlannerRegistry::Default().Names()) {
    for (const Cell& cell : kCells) {
      for (const auto& [costs, label] : kCosts) {
        const absl::StatusOr<SimResult> full = Simulated(name, cell, costs, true);
        const absl::StatusOr<SimResult> bare = Simulated(name, cell, costs, false);
        const std::string key = absl::StrCat(name, "/", cell.label, "/", label);
        ASSERT_EQ(full.ok(), bare.ok()) << key;
        if (!full.ok()) continue;
        EXPECT_EQ(full->step_time, bare->step_time) << key;
        EXPECT_EQ(full->num_actions, bare->num_actions) << key;
        EXPECT_EQ(full->num_transfers, bare->num_transfers) << key;
        EXPECT_EQ(full->peak_inflight, bare->peak_inflight) << key;
        EXPECT_TRUE(bare->per_stage.empty() && bare->transfers.empty()) << key;
      }
    }
  }
}

}  // namespace
}  // namespace stagehand::runtime::sim
