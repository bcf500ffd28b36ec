// The messages of the actor runtime: small value types with named fields, each with CAF
// 0.17's inspect() and registered by RegisterMessageTypes. Not behaviour and not the
// interfaces: atoms.h names the atoms, interfaces.h which actor takes which message.
#ifndef STAGEHAND_ACTORS_MESSAGES_H_
#define STAGEHAND_ACTORS_MESSAGES_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "actors/atoms.h"
#include "caf/all.hpp"
#include "runtime/action.h"
#include "runtime/sub_step.h"

namespace stagehand::actors {

// An activation (after F) or gradient (after B) for (chunk, microbatch) on `to_stage`.
struct TensorMessage {
  // The action that consumes it: kForward (an activation) or kBackwardInput (a gradient,
  // for I or B).
  runtime::ActionKind kind = runtime::ActionKind::kForward;
  int from_stage = 0;
  int to_stage = 0;
  int chunk = 0;  // the destination chunk
  int microbatch = 0;
  bool local = false;  // produced by a chunk on the same stage (no transfer lane)
  std::vector<float> payload;
  // Steady-clock ns at which the producer handed it to a transfer lane (it had finished
  // computing it); in a cluster, when the receiving rank learnt so (the transfer notice
  // arrived): the transfers-exposed timer's "in flight since". 0 = unknown.
  int64_t handed_off_ns = 0;
};

// A microbatch actor finished a compute action on its stage's lane.
struct ComputeDone {
  runtime::ActionKind kind = runtime::ActionKind::kForward;
  int chunk = 0;
  int microbatch = 0;
  double loss = 0.0;          // F of the last chunk
  double seconds = 0.0;       // time on the lane
  std::string error;          // empty when it succeeded
  double data_seconds = 0.0;  // of `seconds`: building the batch (F of the first chunk)
  int64_t end_ns = 0;         // steady-clock ns at which the lane finished it
};

// Stage -> microbatch actor: run one sub-step of a compute action (fine-grained callables,
// runtime/sub_step_graph.h's SubStepOrder without the stage, chunk and microbatch, which the
// actor has) on the compute or the communication lane.
struct SubStepRun {
  runtime::ActionKind kind = runtime::ActionKind::kForward;
  int layer = 0;
  runtime::SubStepKind part = runtime::SubStepKind::kRest;
  int index = 0;
  int count = 1;
  bool whole = false;
};

// A microbatch actor's lane finished a sub-step (`done` as for a whole action).
struct SubStepDone {
  SubStepRun run;
  ComputeDone done;
};

// Stage -> microbatch actor: send your latest output to (to_stage, dest_chunk).
struct ShipOrder {
  runtime::ActionKind kind = runtime::ActionKind::kForward;  // of the consumer: F or I

  int to_stage = 0;
  int dest_chunk = 0;
  bool local = false;
};

// Stage -> driver: the stage is idle with work left (blocked) or answers a probe.
struct StageStatus {
  int stage = 0;
  int wave = 0;  // 0 = unsolicited
  bool blocked = false;
  bool done = false;
  int64_t sent = 0;      // transfers this stage started this step
  int64_t received = 0;  // transfers that arrived here this step
  std::string waiting;   // StageState::DescribeWaiting()
};

// Stage -> driver: the stage finished its compute for the step, or failed.
struct StageDone {
  int stage = 0;
  std::vector<double> losses;  // per microbatch, stages holding the last chunk
  double busy_seconds = 0.0;   // compute time on the lane this step
  std::string error;           // empty when it succeeded
  // Seconds this run by timer phase (runtime/train/timers.h): forward, backward-input (I and
  // fused B), backward-weight, data loading (lane time), transfers exposed (lane idle).
  std::vector<double> phase_seconds;
  std::vector<int> non_finite_losses;  // indices of `losses` sent as 0 (SendableDoubles)
};

// Gradients by chunk and tensor name (tied weights), and per-chunk squared norms.
// Each optimizer phase's answer carries its lane seconds (the optimizer timer).
struct TiedGradients {
  int stage = 0;
  std::map<int, std::map<std::string, std::vector<float>>> grads;
  double seconds = 0.0;
};
struct SquaredNorms {
  int stage = 0;
  std::map<int, std::vector<double>> norms;
  std::map<int, std::vector<std::string>> names;  // the tensors' names, in the same order
  double seconds = 0.0;
  std::map<int, std::vector<int>> non_finite;  // indices of `norms` sent as 0 (SendableDoubles)
};
struct OptimizerDone {
  int stage = 0;
  double seconds = 0.0;
};
// Stage -> driver: this step's gradients are zeroed (answer to discard_atom).
struct GradientsDiscarded {
  int stage = 0;
  double seconds = 0.0;
};

// A stage's reduction lane -> the stage: REDUCE_GRAD of bucket `bucket` (an index into the
// stage's bucket plan, runtime/train/grad_buckets.h) finished.
struct GradReduced {
  int bucket = 0;
  double seconds = 0.0;  // time on the reduction lane
  std::string error;     // empty when it succeeded
};

// A stage's compute lane -> the stage: the step's last W (or B) of `chunk` finished its first
// `parts` parts (StageWork::SetGradientProgress), so the buckets of those layers may be reduced.
// Sent from the lane before that action's ComputeDone, so it never reaches a later step.
struct GradPartsDone {
  int chunk = 0;
  int parts = 0;
};

// A loss stage's reduction lane -> the stage: every replica's microbatch losses, replica by
// replica (StageWork::GatherLosses). In-process only.
struct LossesGathered {
  std::vector<double> losses;
  std::string error;  // empty when it succeeded
};

// Driver -> main thread.
struct StepOutcome {
  double loss = 0.0;
  double grad_norm = 0.0;
  std::vector<double> busy_seconds;  // per stage: compute time on its lane
  double seconds = 0.0;              // wall time of the step (set by Pipeline::RunStep)
  std::string error;
  // The rerun state machine (runtime/train/rerun.h): runs of the step (1: no rerun), whether
  // the batch was skipped (no update), and the lines it logged.
  int runs = 1;
  bool skipped = false;
  std::vector<std::string> notes;
  // Per stage, seconds by timer phase (runtime/train/timers.h, kNumTimerPhases values; every
  // run of the step counted): --log_timers.
  std::vector<std::vector<double>> phase_seconds;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, TensorMessage& x) {
  return f(caf::meta::type_name("TensorMessage"), x.kind, x.from_stage, x.to_stage, x.chunk,
           x.microbatch, x.local, x.payload, x.handed_off_ns);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, ComputeDone& x) {
  return f(caf::meta::type_name("ComputeDone"), x.kind, x.chunk, x.microbatch, x.loss, x.seconds,
           x.error, x.data_seconds, x.end_ns);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, SubStepRun& x) {
  return f(caf::meta::type_name("SubStepRun"), x.kind, x.layer, x.part, x.index, x.count, x.whole);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, SubStepDone& x) {
  return f(caf::meta::type_name("SubStepDone"), x.run, x.done);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, ShipOrder& x) {
  return f(caf::meta::type_name("ShipOrder"), x.kind, x.to_stage, x.dest_chunk, x.local);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, StageStatus& x) {
  return f(caf::meta::type_name("StageStatus"), x.stage, x.wave, x.blocked, x.done, x.sent,
           x.received, x.waiting);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, StageDone& x) {
  return f(caf::meta::type_name("StageDone"), x.stage, x.losses, x.busy_seconds, x.error,
           x.phase_seconds, x.non_finite_losses);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, TiedGradients& x) {
  return f(caf::meta::type_name("TiedGradients"), x.stage, x.grads, x.seconds);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, SquaredNorms& x) {
  return f(caf::meta::type_name("SquaredNorms"), x.stage, x.norms, x.names, x.seconds,
           x.non_finite);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, OptimizerDone& x) {
  return f(caf::meta::type_name("OptimizerDone"), x.stage, x.seconds);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, GradientsDiscarded& x) {
  return f(caf::meta::type_name("GradientsDiscarded"), x.stage, x.seconds);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, GradReduced& x) {
  return f(caf::meta::type_name("GradReduced"), x.bucket, x.seconds, x.error);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, GradPartsDone& x) {
  return f(caf::meta::type_name("GradPartsDone"), x.chunk, x.parts);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, LossesGathered& x) {
  return f(caf::meta::type_name("LossesGathered"), x.losses, x.error);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, StepOutcome& x) {
  return f(caf::meta::type_name("StepOutcome"), x.loss, x.grad_norm, x.busy_seconds, x.seconds,
           x.error, x.runs, x.skipped, x.notes, x.phase_seconds);
}

// CAF 0.17 serializes a double with pack754, which garbles NaN and never returns on an
// infinity. Values that may be non-finite (losses, squared norms: what the rerun state
// machine checks) cross ranks as 0 with their indices listed apart:
// SendableDoubles zeroes the non-finite values of `values` and returns their indices;
// RestoreNonFinite sets those indices to NaN again.
std::vector<int> SendableDoubles(std::vector<double>& values);
void RestoreNonFinite(std::vector<double>& values, const std::vector<int>& indices);

// Registers every message type above with `config`.
void RegisterMessageTypes(caf::actor_system_config& config);

}  // namespace stagehand::actors

#endif  // STAGEHAND_ACTORS_MESSAGES_H_
