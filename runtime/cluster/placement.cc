// Contiguous placement of stages on ranks.
#include "runtime/cluster/placement.h"

#include "absl/strings/str_cat.h"
#include "runtime/grid/rank_grid.h"
#include "runtime/util/status_macros.h"

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

absl::StatusOr<ClusterLayout> ClusterLayout::Create(int num_stages, int world_size, int dp) {
  if (num_stages < 1 || dp < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("a cluster of ", num_stages, " stages and ", dp, " replicas"));
  }
  ClusterLayout layout;
  layout.num_stages_ = num_stages;
  layout.world_size_ = world_size;
  layout.dp_ = dp;
  if (dp == 1) {
    if (world_size < 1 || world_size > num_stages) {
      return absl::InvalidArgumentError(absl::StrCat(world_size, " workers for ", num_stages,
                                                     " stages: need 1 <= workers <= stages"));
    }
    layout.replica_.assign(world_size, 0);
    for (int r = 0; r < world_size; ++r)
      layout.stages_.push_back(StagesOfRank(num_stages, world_size, r));
    layout.stage_ranks_.push_back(runtime::StageRanks(num_stages, world_size));
    return layout;
  }
  if (static_cast<int64_t>(world_size) != int64_t{dp} * num_stages) {
    return absl::InvalidArgumentError(
        absl::StrCat(world_size, " workers for --dp=", dp, " replicas of ", num_stages,
                     " stages: with data parallelism every worker holds one stage of one "
                     "replica, so the workers must number dp x stages = ",
                     int64_t{dp} * num_stages));
  }
  ASSIGN_OR_RETURN(RankGrid grid, RankGrid::DataPipeline(dp, num_stages));
  layout.stage_ranks_.assign(dp, std::vector<int>(num_stages, -1));
  for (int r = 0; r < world_size; ++r) {
    ASSIGN_OR_RETURN(const int replica, grid.Coordinate(r, "dp"));
    ASSIGN_OR_RETURN(const int stage, grid.Coordinate(r, "pp"));
    layout.replica_.push_back(replica);
    layout.stages_.push_back({stage});
    layout.stage_ranks_[replica][stage] = r;
  }
  return layout;
}

std::string RankFile(const std::string& path, int rank) {
  const std::string ext = ".safetensors";
  if (path.size() >= ext.size() && path.compare(path.size() - ext.size(), ext.size(), ext) == 0) {
    return path.substr(0, path.size() - ext.size()) + ".rank" + std::to_string(rank) + ext;
  }
  return path + ".rank" + std::to_string(rank);
}

}  // namespace stagehand::runtime
