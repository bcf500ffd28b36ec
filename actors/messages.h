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

namespace stagehand::actors {

// An activation (after F) or gradient (after B) for (chunk, microbatch) on `to_stage`.
struct TensorMessage {
  // The action that consumes it: kForward (an activation) or kBackwardInput (a gradient,
  // for I or B).
  runtime::ActionKind kind = runtime::ActionKind::kForward;
  int from_stage = 0;
  int to_stage = 0;
  int chunk = 0;       // the destination chunk
  int microbatch = 0;
  bool local = false;  // produced by a chunk on the same stage (no transfer lane)
  std::vector<float> payload;
};

// A microbatch actor finished a compute action on its stage's lane.
struct ComputeDone {
  runtime::ActionKind kind = runtime::ActionKind::kForward;
  int chunk = 0;
  int microbatch = 0;
  double loss = 0.0;     // F of the last chunk
  double seconds = 0.0;  // time on the lane
  std::string error;     // empty when it succeeded
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
};

// Gradients by chunk and tensor name (tied weights), and per-chunk squared norms.
struct TiedGradients {
  int stage = 0;
  std::map<int, std::map<std::string, std::vector<float>>> grads;
};
struct SquaredNorms {
  int stage = 0;
  std::map<int, std::vector<double>> norms;
};
struct OptimizerDone {
  int stage = 0;
};

// A stage's reduction lane -> the stage: REDUCE_GRAD of bucket `bucket` (an index into the
// stage's bucket plan, runtime/train/grad_buckets.h) finished.
struct GradReduced {
  int bucket = 0;
  double seconds = 0.0;  // time on the reduction lane
  std::string error;     // empty when it succeeded
};

// Driver -> main thread.
struct StepOutcome {
  double loss = 0.0;
  std::vector<double> losses;        // per microbatch of this replica, in microbatch order
  double grad_norm = 0.0;
  std::vector<double> busy_seconds;  // per stage: compute time on its lane
  double seconds = 0.0;              // wall time of the step (set by Pipeline::RunStep)
  std::string error;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, TensorMessage& x) {
  return f(caf::meta::type_name("TensorMessage"), x.kind, x.from_stage, x.to_stage, x.chunk,
           x.microbatch, x.local, x.payload);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, ComputeDone& x) {
  return f(caf::meta::type_name("ComputeDone"), x.kind, x.chunk, x.microbatch, x.loss,
           x.seconds, x.error);
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
  return f(caf::meta::type_name("StageDone"), x.stage, x.losses, x.busy_seconds, x.error);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, TiedGradients& x) {
  return f(caf::meta::type_name("TiedGradients"), x.stage, x.grads);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, SquaredNorms& x) {
  return f(caf::meta::type_name("SquaredNorms"), x.stage, x.norms);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, OptimizerDone& x) {
  return f(caf::meta::type_name("OptimizerDone"), x.stage);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, GradReduced& x) {
  return f(caf::meta::type_name("GradReduced"), x.bucket, x.seconds, x.error);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, StepOutcome& x) {
  return f(caf::meta::type_name("StepOutcome"), x.loss, x.losses, x.grad_norm, x.busy_seconds,
           x.seconds, x.error);
}

// Registers every message type above with `config`.
void RegisterMessageTypes(caf::actor_system_config& config);

}  // namespace stagehand::actors

#endif  // STAGEHAND_ACTORS_MESSAGES_H_
