// DualPipeV as an OrderedPlanner: eight numbered phases whose counts are closed-form in
// P, M and the stage. Not overlapped for real: a pair (F of one microbatch, B of another)
// runs back to back on the stage's one compute lane; its overlap of communication comes
// from the transfer lanes.
#include "runtime/planners/dualpipe_v.h"

#include <deque>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/planners/planner_spec.h"
#include "runtime/schedule_table.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {
namespace {

// Builds one stage's order: per chunk, forwards and backwards go in microbatch order; W's
// of deferred ("zero-bubble") backwards wait in a FIFO until a phase runs one.
class OrderBuilder {
 public:
  explicit OrderBuilder(int stage) : stage_(stage) {}

  void Forward(int chunk) { Add(ActionKind::kForward, chunk, forward_[chunk]++); }
  // B of the chunk's next microbatch; its W at once (a full backward) or deferred.
  void Backward(int chunk, bool defer_weight) {
    const int mb = backward_[chunk]++;
    Add(ActionKind::kBackwardInput, chunk, mb);
    if (defer_weight) {
      deferred_.emplace_back(chunk, mb);
    } else {
      Add(ActionKind::kBackwardWeight, chunk, mb);
    }
  }
  // The oldest deferred W, if any.
  void Weight() {
    if (deferred_.empty()) return;
    const auto [chunk, mb] = deferred_.front();
    deferred_.pop_front();
    Add(ActionKind::kBackwardWeight, chunk, mb);
  }
  std::vector<Action> Take() { return std::move(order_); }

 private:
  void Add(ActionKind kind, int chunk, int mb) {
    order_.push_back(Action{stage_, kind, chunk, mb});
  }

  int stage_;
  std::map<int, int> forward_, backward_;     // chunk -> next microbatch
  std::deque<std::pair<int, int>> deferred_;  // (chunk, microbatch) of deferred W's
  std::vector<Action> order_;
};

}  // namespace

std::string DualPipeVDefinition::description() const {
  return "DualPipeV: two chunks per stage in a V, forward/backward pairs of different "
         "microbatches in the main phase, B/W split at the edges; needs M >= 2P";
}

absl::StatusOr<StepSpec> DualPipeVDefinition::MakeSpec(const PlannerOptions& options) const {
  ASSIGN_OR_RETURN(StepSpec spec, VSpec(options, Backward::kSplit));
  if (options.num_microbatches < 2 * options.num_stages) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dualpipe_v needs num_microbatches >= 2 * num_stages = ", 2 * options.num_stages,
        " (one per chunk of the V), got ", options.num_microbatches,
        "; use zb_v, which runs any number"));
  }
  if (spec.max_inflight > 0) {
    for (int s = 0; s < spec.num_stages; ++s) {
      const int peak = PeakInflight(DualPipeVOrder(spec, s));
      if (peak > spec.max_inflight) {
        return absl::InvalidArgumentError(absl::StrCat(
            "dualpipe_v holds ", peak, " chunk activations on stage ", s,
            ", above max_inflight = ", spec.max_inflight, "; use zb_v with that budget"));
      }
    }
  }
  return spec;
}

std::vector<Action> DualPipeVOrder(const StepSpec& spec, int stage) {
  // P = num_stages, M = num_microbatches, r = stage. Chunk "0" of the V on this stage is
  // chunk r (going down), chunk "1" is chunk 2P-1-r (coming back up).
  const int num_stages = spec.num_stages;
  const int num_microbatches = spec.num_microbatches;
  const int r = stage;
  const int down = r, up = 2 * num_stages - 1 - r;
  OrderBuilder b(stage);
  // 1. (P-r-1)*2 forwards of the down chunk.
  for (int i = 0; i < 2 * (num_stages - r - 1); ++i) b.Forward(down);
  // 2. r+1 pairs: forward down, forward up.
  for (int i = 0; i < r + 1; ++i) {
    b.Forward(down);
    b.Forward(up);
  }
  // 3. P-r-1 times: B up (W deferred), a deferred W, forward up.
  for (int i = 0; i < num_stages - r - 1; ++i) {
    b.Backward(up, /*defer_weight=*/true);
    b.Weight();
    b.Forward(up);
  }
  // 4. main phase, M-2P+r+1 times: (forward down, full backward up), then
  //    (forward up, full backward down): the forward/backward pairs.
  for (int i = 0; i < num_microbatches - 2 * num_stages + r + 1; ++i) {
    b.Forward(down);
    b.Backward(up, /*defer_weight=*/false);
    b.Forward(up);
    b.Backward(down, /*defer_weight=*/false);
  }
  // 5. P-r-1 times: full backward up, then the pair (forward up, full backward down).
  for (int i = 0; i < num_stages - r - 1; ++i) {
    b.Backward(up, /*defer_weight=*/false);
    b.Forward(up);
    b.Backward(down, /*defer_weight=*/false);
  }
  // 6. r+1 times: backward up, backward down; from the middle on (i = (r+1)/2) their W's
  //    are deferred, odd stages switching before the up backward, even ones after it.
  bool defer = false;
  for (int i = 0; i < r + 1; ++i) {
    if (i == (r + 1) / 2 && r % 2 == 1) defer = true;
    b.Backward(up, defer);
    if (i == (r + 1) / 2 && r % 2 == 0) defer = true;
    b.Backward(down, defer);
  }
  // 7. P-r-1 times: a deferred W, then backward down (W deferred).
  for (int i = 0; i < num_stages - r - 1; ++i) {
    b.Weight();
    b.Backward(down, defer);
  }
  // 8. r+1 deferred W's: all that are left.
  for (int i = 0; i < r + 1; ++i) b.Weight();
  return b.Take();
}

std::unique_ptr<Planner> DualPipeVDefinition::MakePlanner(const StepSpec& spec, int stage) const {
  return std::make_unique<OrderedPlanner>(DualPipeVOrder(spec, stage), /*overlap_pairs=*/true);
}

STAGEHAND_REGISTER_PLANNER(DualPipeVDefinition);

}  // namespace stagehand::runtime
