// StepSpec validation and the standard chunk placements.
// Not a planner: placements say where chunks live, never in which order they run.
#include "runtime/step_spec.h"

#include "absl/strings/str_cat.h"

namespace stagehand::runtime {

absl::Status ValidateStepSpec(const StepSpec& spec) {
  const auto bad = [](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat("StepSpec.", parts...));
  };
  if (spec.num_stages < 1) return bad("num_stages = ", spec.num_stages, ", must be >= 1");
  if (spec.num_microbatches < 1) {
    return bad("num_microbatches = ", spec.num_microbatches, ", must be >= 1");
  }
  if (spec.num_chunks < 1) return bad("num_chunks = ", spec.num_chunks, ", must be >= 1");
  if (static_cast<int>(spec.chunk_to_stage.size()) != spec.num_chunks) {
    return bad("chunk_to_stage has ", spec.chunk_to_stage.size(),
               " entries, must have num_chunks = ", spec.num_chunks);
  }
  std::vector<int> chunks_per_stage(spec.num_stages, 0);
  for (int c = 0; c < spec.num_chunks; ++c) {
    const int s = spec.chunk_to_stage[c];
    if (s < 0 || s >= spec.num_stages) {
      return bad("chunk_to_stage[", c, "] = ", s, ", must be in [0, num_stages = ", spec.num_stages,
                 ")");
    }
    ++chunks_per_stage[s];
  }
  for (int s = 0; s < spec.num_stages; ++s) {
    if (chunks_per_stage[s] == 0) {
      return bad("chunk_to_stage places no chunk on stage ", s,
                 "; every stage must hold at least one chunk");
    }
  }
  if (spec.max_inflight < 0) {
    return bad("max_inflight = ", spec.max_inflight, ", must be >= 0 (0 = unlimited)");
  }
  return absl::OkStatus();
}

std::vector<int> StandardPlacement(int num_stages, int chunks_per_stage) {
  std::vector<int> placement;
  if (num_stages < 1 || chunks_per_stage < 1) return placement;
  for (int c = 0; c < num_stages * chunks_per_stage; ++c) placement.push_back(c % num_stages);
  return placement;
}

std::vector<int> VPlacement(int num_stages) {
  std::vector<int> placement;
  for (int c = 0; c < 2 * num_stages; ++c) {
    placement.push_back(c < num_stages ? c : 2 * num_stages - 1 - c);
  }
  return placement;
}

std::vector<int> ChunksOnStage(const StepSpec& spec, int stage) {
  std::vector<int> chunks;
  for (int c = 0; c < static_cast<int>(spec.chunk_to_stage.size()); ++c) {
    if (spec.chunk_to_stage[c] == stage) chunks.push_back(c);
  }
  return chunks;
}

bool HoldsLoss(const StepSpec& spec, int chunk) { return chunk == spec.num_chunks - 1; }

int LossStage(const StepSpec& spec) { return spec.chunk_to_stage[spec.num_chunks - 1]; }

}  // namespace stagehand::runtime
