// StepSpec: the shape of one training step (stages, microbatches, chunks and where each
// chunk lives) plus its validation. Not a schedule: the order of actions comes from a planner.
#ifndef STAGEHAND_RUNTIME_STEP_SPEC_H_
#define STAGEHAND_RUNTIME_STEP_SPEC_H_

#include <vector>

#include "absl/status/status.h"

namespace stagehand::runtime {

// Letters used in comments across runtime/: P = num_stages, M = num_microbatches,
// C = num_chunks, v = chunks per stage.
struct StepSpec {
  int num_stages = 0;        // P >= 1
  int num_microbatches = 0;  // M >= 1
  // C >= 1. Chunk c holds consecutive model layers in chunk order: chunk 0 has the
  // embedding, chunk C-1 the head and the loss.
  int num_chunks = 0;
  std::vector<int> chunk_to_stage;  // (C): the stage that holds chunk c
  bool split_backward = false;      // I and W as separate actions; else fused B
  // Most (chunk, microbatch) activations a stage may hold at once (F finished, W/B not);
  // 0 = unlimited.
  int max_inflight = 0;
};

// OK, or InvalidArgument naming the bad field (every stage must hold at least one chunk).
absl::Status ValidateStepSpec(const StepSpec& spec);

// chunk_to_stage for num_chunks = P*v: chunk c on stage c % P (v = 1 is plain 1F1B/GPipe,
// v > 1 is interleaved).
std::vector<int> StandardPlacement(int num_stages, int chunks_per_stage);

// chunk_to_stage for the V shape (2P chunks): c < P on stage c, else on stage 2P-1-c, so
// stage 0 holds the first and the last chunk.
std::vector<int> VPlacement(int num_stages);

// The chunks held by `stage`, ascending.
std::vector<int> ChunksOnStage(const StepSpec& spec, int stage);

// The loss is computed by the last chunk's forward: HoldsLoss(spec, c) iff c is that chunk,
// and LossStage(spec) is the stage that holds it. Everything that needs to know where the
// loss lives asks these two.
bool HoldsLoss(const StepSpec& spec, int chunk);
int LossStage(const StepSpec& spec);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_STEP_SPEC_H_
