// The rank grid: which rank sits where, and who its partners are.
//
// Like Megatron's parallel_state, a grid is a list of named dimensions, fastest-varying first
// (Megatron's default order "tp-cp-ep-dp-pp" puts the pipeline dimension last, so ranks of one
// pipeline stage across replicas are neighbours). A rank's coordinates are its mixed-radix
// digits in that order. Nothing else in the tree computes ranks by hand: placement, data
// sharding and collectives all ask the grid.
//
// Expert parallelism carves its groups out of the data-parallel dimension: Split("dp", {{"ep",
// E}, {"edp", D / E}}) replaces dp by two dimensions whose product is dp, so the same ranks
// form expert groups (ep) and expert-data-parallel groups (edp).
#ifndef STAGEHAND_RUNTIME_GRID_RANK_GRID_H_
#define STAGEHAND_RUNTIME_GRID_RANK_GRID_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace stagehand::runtime {

struct GridDim {
  std::string name;
  int size = 1;
};

// The most ranks a grid may name. Far above any real job; it bounds what a bad flag or file
// can make us allocate.
inline constexpr long long kMaxWorldSize = 1 << 20;

class RankGrid {
 public:
  // Dimensions fastest-varying first. Names must be unique, non-empty identifiers; sizes >= 1;
  // the product is at most kMaxWorldSize.
  static absl::StatusOr<RankGrid> Create(std::vector<GridDim> dims_fastest_first);

  // The pipeline-replica grid of the data-parallel issue: D replicas of a pipeline of P ranks.
  // Order "dp-pp": a stage's data-parallel peers are consecutive ranks.
  static absl::StatusOr<RankGrid> DataPipeline(int dp, int pp);

  int world_size() const { return world_size_; }
  const std::vector<GridDim>& dims() const { return dims_; }
  bool HasDim(const std::string& name) const;
  // Size of a named dimension; 1 for a dimension the grid does not have (a grid without "ep"
  // has expert-parallel size 1), so callers never special-case missing dimensions.
  int Size(const std::string& name) const;

  // Coordinates of `rank`, in dims() order. Error if rank is outside [0, world_size).
  absl::StatusOr<std::vector<int>> Coordinates(int rank) const;
  // One coordinate; 0 for a dimension the grid does not have.
  absl::StatusOr<int> Coordinate(int rank, const std::string& dim) const;
  absl::StatusOr<int> RankAt(const std::vector<int>& coordinates) const;

  // The ranks that differ from `rank` only along `along` (in ascending rank order; `rank`
  // itself included). Group(r, {"dp"}) are r's data-parallel peers; Group(r, {"pp"}) its
  // pipeline. Unknown dimension names are an error.
  absl::StatusOr<std::vector<int>> Group(int rank, const std::vector<std::string>& along) const;
  // Every such group: a partition of the world, ordered by each group's first rank.
  absl::StatusOr<std::vector<std::vector<int>>> Groups(const std::vector<std::string>& along) const;

  // Replaces dimension `dim` by `parts` (fastest first) whose sizes multiply to its size.
  absl::StatusOr<RankGrid> Split(const std::string& dim, std::vector<GridDim> parts) const;

  // "world 4 = dp 2 x pp 2 (dp fastest)" plus one line per rank with its coordinates and
  // groups; what the launcher prints at start.
  std::string Describe() const;

 private:
  RankGrid(std::vector<GridDim> dims, int world_size)
      : dims_(std::move(dims)), world_size_(world_size) {}
  absl::StatusOr<std::vector<bool>> AlongMask(const std::vector<std::string>& along) const;
  int IndexOf(const std::string& name) const;

  std::vector<GridDim> dims_;
  int world_size_ = 1;
};

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_GRID_RANK_GRID_H_
