// The tied tensors (wte in the embedding and the head) each stage holds, and the check of
// tied gradients that arrive from the network against them: what a gate admits before it
// forwards a tied-gradient sum. Pure functions, "" when fine, else what is wrong. Not the
// sum itself (the step driver adds the tied gradients).
#ifndef STAGEHAND_RUNTIME_CLUSTER_TIED_SHAPES_H_
#define STAGEHAND_RUNTIME_CLUSTER_TIED_SHAPES_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "runtime/step_spec.h"

namespace stagehand::runtime {

// chunk -> tensor name -> floats.
using TiedShapes = std::map<int, std::map<std::string, int64_t>>;

// The tied tensors of `stage`'s chunks: "wte" (vocab * d_model floats) in the first and the
// last chunk (embedding and head) when there is more than one chunk. `wte_floats` 0: the head
// has its own weight (an untied model), and nothing is tied.
TiedShapes StageTiedShapes(const StepSpec& spec, int stage, int64_t wte_floats);

// Tied gradients must name exactly the expected tensors with their sizes.
std::string CheckTiedGradients(
    const std::map<int, std::map<std::string, std::vector<float>>>& grads,
    const TiedShapes& expected);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_CLUSTER_TIED_SHAPES_H_
