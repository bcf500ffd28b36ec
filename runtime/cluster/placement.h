// Placement of pipeline stages on worker ranks: contiguous blocks, as even as possible
// (rank r holds stages [r*P/N, (r+1)*P/N)), and the way back from a stage to its rank.
// Not a planner: chunks are placed on stages by the planner's StepSpec; this only groups
// stages into processes.
#ifndef STAGEHAND_RUNTIME_CLUSTER_PLACEMENT_H_
#define STAGEHAND_RUNTIME_CLUSTER_PLACEMENT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace stagehand::runtime {

// The stages of `rank` among `world_size` ranks for `num_stages` stages (world_size <= num_stages).
std::vector<int> StagesOfRank(int num_stages, int world_size, int rank);

// stage -> rank for every stage.
std::vector<int> StageRanks(int num_stages, int world_size);

// Where the ranks of a cluster run sit: `dp` replicas of a pipeline of `num_stages` stages.
// With one replica the stages are grouped in contiguous blocks (StagesOfRank, 1 <= world_size
// <= num_stages). With data parallelism every rank holds one stage of one replica, seated by
// the rank grid (runtime/grid/rank_grid.h, RankGrid::DataPipeline: dp varies fastest, as in
// Megatron), so world_size must be dp x num_stages and a stage's replicas are neighbours.
class ClusterLayout {
 public:
  // InvalidArgument naming the counts when world_size does not fit (see above).
  static absl::StatusOr<ClusterLayout> Create(int num_stages, int world_size, int dp);

  int num_stages() const { return num_stages_; }
  int world_size() const { return world_size_; }
  int dp() const { return dp_; }
  // The replica `rank` belongs to (its dp coordinate; 0 without data parallelism).
  int Replica(int rank) const { return replica_.at(rank); }
  // The stages `rank` holds, ascending.
  const std::vector<int>& Stages(int rank) const { return stages_.at(rank); }
  // stage -> rank, within replica `replica`.
  const std::vector<int>& StageRanks(int replica) const { return stage_ranks_.at(replica); }

 private:
  ClusterLayout() = default;
  int num_stages_ = 1, world_size_ = 1, dp_ = 1;
  std::vector<int> replica_;                   // rank -> replica
  std::vector<std::vector<int>> stages_;       // rank -> its stages
  std::vector<std::vector<int>> stage_ranks_;  // replica -> stage -> rank
};

// The file rank `rank` writes for a run-wide output `path`: "<stem>.rank<R>.safetensors"
// for "<stem>.safetensors", else "<path>.rank<R>".
std::string RankFile(const std::string& path, int rank);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_CLUSTER_PLACEMENT_H_
