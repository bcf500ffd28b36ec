// How a model's layers are cut into pipeline chunks (--partition): equal layer counts (the
// default), explicit counts ("7,5,5,7"), or "balanced": contiguous chunks whose estimated
// costs (per-layer FLOPs from the config, the embedding on the first chunk and the head on
// the last) have the smallest possible maximum. A cut never drops or duplicates a layer.
// ("profile:TRACE", measured costs, is runtime/train/profile_partition.h's.)
#ifndef STAGEHAND_MODELS_PARTITION_H_
#define STAGEHAND_MODELS_PARTITION_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "models/gpt_chunk.h"
#include "models/gpt_config.h"

namespace stagehand::models {

// Forward FLOPs per token of each layer at sequence length T (the backward is a fixed
// multiple of it, so it does not change a cut); the embedding's cost is added to layer 0 and
// the final norm, head and loss to the last layer, as the chunks holding them pay for them.
std::vector<double> LayerCosts(const GptConfig& config, int seq_len);

// The contiguous cut of layers with `costs` into exactly `num_chunks` non-empty chunks (at
// most costs.size()) that minimises the largest chunk cost.
std::vector<int> BalancedCut(const std::vector<double>& costs, int num_chunks);

// Layers per chunk for `spec` ("" or "equal", "balanced", or comma-separated counts) and
// `num_chunks` chunks. Errors name the flag and what is wrong.
absl::StatusOr<std::vector<int>> ResolvePartition(const std::string& spec, const GptConfig& config,
                                                  int num_chunks, int seq_len);

// "balanced: layers 2,1,2,1, estimated shares 24.8% 25.3% 24.6% 25.3%".
std::string DescribePartition(const std::string& spec, const std::vector<int>& layers_per_chunk,
                              const GptConfig& config, int seq_len);

}  // namespace stagehand::models

#endif  // STAGEHAND_MODELS_PARTITION_H_
