// Placement of pipeline stages on worker ranks: contiguous blocks, as even as possible
// (rank r holds stages [r*P/N, (r+1)*P/N)). Not a planner: chunks are placed on stages by
// the planner's StepSpec; this only groups stages into processes.
#ifndef STAGEHAND_ACTORS_CLUSTER_PLACEMENT_H_
#define STAGEHAND_ACTORS_CLUSTER_PLACEMENT_H_

#include <vector>

namespace stagehand::actors::cluster {

// The stages of `rank` among `world_size` ranks for `num_stages` stages (world_size <= num_stages).
inline std::vector<int> StagesOfRank(int num_stages, int world_size, int rank) {
  std::vector<int> out;
  for (int s = rank * num_stages / world_size; s < (rank + 1) * num_stages / world_size; ++s) {
    out.push_back(s);
  }
  return out;
}

}  // namespace stagehand::actors::cluster

#endif  // STAGEHAND_ACTORS_CLUSTER_PLACEMENT_H_
