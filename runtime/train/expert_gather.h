// --ep's whole experts from an expert-parallel group's shards, for what must see the whole
// model (checkpoints, held-out passes, saved parameters), and the copies by name that move
// tensors between a shard and a chunk holding every expert. Not a reduction: nothing is summed.
//
// Members hold the same layout (expert_layout.h): each packs its experts' values in tensor
// order, one all-gather over the group hands every member every member's pack, and member j's
// pack lands under the names member j holds (ExpertNamesOf).
#ifndef STAGEHAND_RUNTIME_TRAIN_EXPERT_GATHER_H_
#define STAGEHAND_RUNTIME_TRAIN_EXPERT_GATHER_H_

#include <cstdint>

#include "absl/status/status.h"
#include "models/parameters.h"
#include "runtime/collectives/collective.h"
#include "runtime/train/optimizer.h"

namespace stagehand::runtime {

// Copies every tensor that `from` and `to` both hold, by name, from `from_data` to `to_data`:
// flat buffers laid out as `from` and `to` (their values, or AdamW moments).
void CopyHeldTensors(const models::ParameterSet<float>& from, const float* from_data,
                     const models::ParameterSet<float>& to, float* to_data);

// Moments laid out as `from` into moments laid out as `to`, by name (`to` sized to it).
void CopyHeldMoments(const models::ParameterSet<float>& from, const OptimizerState& in,
                     const models::ParameterSet<float>& to, OptimizerState& out);

// Whether `state` holds AdamW moments for `floats` parameters (none before the first update).
bool HoldsMoments(const OptimizerState& state, int64_t floats);

// A collective of `group` (every member calls it, with shards of one cut of the model): sets
// every tensor of `whole` (a chunk holding every expert) from `shard` (this member's chunk)
// and the other members' shards; `with_moments`: their AdamW moments too, from
// `shard_moments` into `whole_moments` (left empty when the shard holds none yet: no update has
// run). `whole` null (and `whole_moments` with it): this member only hands its experts to the
// members that gather them.
absl::Status GatherExperts(Collective& group, const Chunk& shard,
                           const OptimizerState* shard_moments, Chunk* whole,
                           OptimizerState* whole_moments, bool with_moments);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_TRAIN_EXPERT_GATHER_H_
