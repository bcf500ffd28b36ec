// Placement of pipeline stages on worker ranks: contiguous blocks, as even as possible
// (rank r holds stages [r*P/N, (r+1)*P/N)), and the way back from a stage to its rank.
// Not a planner: chunks are placed on stages by the planner's StepSpec; this only groups
// stages into processes.
#ifndef STAGEHAND_RUNTIME_CLUSTER_PLACEMENT_H_
#define STAGEHAND_RUNTIME_CLUSTER_PLACEMENT_H_

#include <string>
#include <vector>

namespace stagehand::runtime {

// The stages of `rank` among `world_size` ranks for `num_stages` stages (world_size <= num_stages).
std::vector<int> StagesOfRank(int num_stages, int world_size, int rank);

// stage -> rank for every stage.
std::vector<int> StageRanks(int num_stages, int world_size);

// The file rank `rank` writes for a run-wide output `path`: "<stem>.rank<R>.safetensors"
// for "<stem>.safetensors", else "<path>.rank<R>".
std::string RankFile(const std::string& path, int rank);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_CLUSTER_PLACEMENT_H_
