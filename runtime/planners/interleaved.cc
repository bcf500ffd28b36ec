// Interleaved 1F1B as an OrderedPlanner: warm-up, steady 1F1B, cool-down over a unit table
// of (local chunk, microbatch) pairs. Not memory-minimal: it holds more than 1F1B.
#include "runtime/planners/interleaved.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/planners/planner_spec.h"
#include "runtime/schedule_table.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {
namespace {

constexpr int kDefaultChunksPerStage = 2;

int ChunksPerStage(const PlannerOptions& options) {
  return options.chunks_per_stage > 0 ? options.chunks_per_stage : kDefaultChunksPerStage;
}

}  // namespace

std::string InterleavedDefinition::description() const {
  return "interleaved 1F1B (virtual pipeline): v chunks per stage (chunks_per_stage, default 2), "
         "bubble (P-1)/(v*M+P-1) for M >= P";
}

std::vector<int> InterleavedGroups(int num_stages, int num_microbatches) {
  const int num_groups = std::max(1, num_microbatches / std::max(num_stages, 1));
  std::vector<int> sizes(num_groups, num_microbatches / num_groups);
  for (int g = 0; g < num_microbatches % num_groups; ++g) ++sizes[g];
  return sizes;
}

absl::StatusOr<StepSpec> InterleavedDefinition::MakeSpec(const PlannerOptions& options) const {
  const int v = ChunksPerStage(options);
  ASSIGN_OR_RETURN(StepSpec spec, StandardSpec(options, v, Backward::kFused));
  if (spec.max_inflight > 0) {
    for (int s = 0; s < spec.num_stages; ++s) {
      const int peak = PeakInflight(InterleavedOrder(spec, s));
      if (peak > spec.max_inflight) {
        return absl::InvalidArgumentError(absl::StrCat(
            "interleaved with v = ", v, " holds ", peak,
            " activations (microbatch-chunks) on stage ", s,
            ", above max_inflight = ", spec.max_inflight, "; lower chunks_per_stage or use 1f1b"));
      }
    }
  }
  return spec;
}

std::vector<Action> InterleavedOrder(const StepSpec& spec, int stage) {
  // P = num_stages, v = chunks per stage, s = stage; local chunk k is chunk k*P + s.
  const int num_stages = spec.num_stages;
  const int v = spec.num_chunks / std::max(num_stages, 1);
  const std::vector<int> groups = InterleavedGroups(num_stages, spec.num_microbatches);
  // The unit table: for each group, for each local chunk k, the group's microbatches.
  std::vector<std::pair<int, int>> units;  // (k, mb)
  int first = 0;
  for (int size : groups) {
    for (int k = 0; k < v; ++k) {
      for (int mb = first; mb < first + size; ++mb) units.emplace_back(k, mb);
    }
    first += size;
  }
  const int num_units = static_cast<int>(units.size());  // v*M
  // Forward i runs units[i] on chunk k; backward i runs units[i] on chunk v-1-k (the model
  // backwards).
  const auto forward = [&](int i) {
    return Action{stage, ActionKind::kForward, units[i].first * num_stages + stage,
                  units[i].second};
  };
  const auto backward = [&](int i) {
    return Action{stage, ActionKind::kBackward, (v - 1 - units[i].first) * num_stages + stage,
                  units[i].second};
  };
  // Warm-up w: forwards until the first backward can arrive: 2(P-1-s) for the stages below,
  // plus (v-1) groups for the other chunks (1F1B's P-1-s when v = 1).
  const int warmup =
      std::min(num_units, v == 1 ? num_stages - 1 - stage
                                 : 2 * (num_stages - 1 - stage) + (v - 1) * groups[0]);
  std::vector<Action> order;
  // 1. warm-up: w forwards.
  for (int i = 0; i < warmup; ++i) order.push_back(forward(i));
  // 2. steady state: v*M - w pairs, forward w+i then backward i.
  for (int i = 0; i < num_units - warmup; ++i) {
    order.push_back(forward(warmup + i));
    order.push_back(backward(i));
  }
  // 3. cool-down: the last w backwards.
  for (int i = num_units - warmup; i < num_units; ++i) order.push_back(backward(i));
  return order;
}

std::unique_ptr<Planner> InterleavedDefinition::MakePlanner(const StepSpec& spec, int stage) const {
  return std::make_unique<OrderedPlanner>(InterleavedOrder(spec, stage));
}

STAGEHAND_REGISTER_PLANNER(InterleavedDefinition);

}  // namespace stagehand::runtime
