// Contiguous placement of stages on ranks.
#include "runtime/cluster/placement.h"

namespace stagehand::runtime {

std::vector<int> StagesOfRank(int num_stages, int world_size, int rank) {
  std::vector<int> out;
  for (int s = rank * num_stages / world_size; s < (rank + 1) * num_stages / world_size; ++s) {
    out.push_back(s);
  }
  return out;
}

std::vector<int> StageRanks(int num_stages, int world_size) {
  std::vector<int> out(num_stages, -1);
  for (int r = 0; r < world_size; ++r) {
    for (int s : StagesOfRank(num_stages, world_size, r)) out[s] = r;
  }
  return out;
}

std::string RankFile(const std::string& path, int rank) {
  const std::string ext = ".safetensors";
  if (path.size() >= ext.size() && path.compare(path.size() - ext.size(), ext.size(), ext) == 0) {
    return path.substr(0, path.size() - ext.size()) + ".rank" + std::to_string(rank) + ext;
  }
  return path + ".rank" + std::to_string(rank);
}

}  // namespace stagehand::runtime
