#include "runtime/grid/rank_grid.h"

#include <algorithm>
#include <cctype>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {
namespace {

bool IsIdentifier(const std::string& name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<RankGrid> RankGrid::Create(std::vector<GridDim> dims) {
  if (dims.empty()) return absl::InvalidArgumentError("rank grid: no dimensions");
  long long world = 1;
  for (size_t i = 0; i < dims.size(); ++i) {
    const GridDim& d = dims[i];
    if (!IsIdentifier(d.name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("rank grid: dimension ", i, " has a bad name '", d.name, "'"));
    }
    for (size_t j = 0; j < i; ++j) {
      if (dims[j].name == d.name) {
        return absl::InvalidArgumentError(
            absl::StrCat("rank grid: dimension '", d.name, "' appears twice"));
      }
    }
    if (d.size < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("rank grid: ", d.name, "=", d.size, " must be at least 1"));
    }
    world *= d.size;
    if (world > kMaxWorldSize) {
      return absl::InvalidArgumentError(absl::StrCat("rank grid: more than ", kMaxWorldSize,
                                                     " ranks (", d.name, "=", d.size, ")"));
    }
  }
  return RankGrid(std::move(dims), static_cast<int>(world));
}

absl::StatusOr<RankGrid> RankGrid::DataPipeline(int dp, int pp) {
  return Create({{"dp", dp}, {"pp", pp}});
}

int RankGrid::IndexOf(const std::string& name) const {
  for (size_t i = 0; i < dims_.size(); ++i) {
    if (dims_[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

bool RankGrid::HasDim(const std::string& name) const { return IndexOf(name) >= 0; }

int RankGrid::Size(const std::string& name) const {
  int i = IndexOf(name);
  return i < 0 ? 1 : dims_[i].size;
}

absl::StatusOr<std::vector<int>> RankGrid::Coordinates(int rank) const {
  if (rank < 0 || rank >= world_size_) {
    return absl::OutOfRangeError(
        absl::StrCat("rank ", rank, " is outside the grid of ", world_size_, " ranks"));
  }
  std::vector<int> coords(dims_.size());
  for (size_t i = 0; i < dims_.size(); ++i) {
    coords[i] = rank % dims_[i].size;
    rank /= dims_[i].size;
  }
  return coords;
}

absl::StatusOr<int> RankGrid::Coordinate(int rank, const std::string& dim) const {
  ASSIGN_OR_RETURN(std::vector<int> coords, Coordinates(rank));
  int i = IndexOf(dim);
  return i < 0 ? 0 : coords[i];
}

absl::StatusOr<int> RankGrid::RankAt(const std::vector<int>& coords) const {
  if (coords.size() != dims_.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rank grid: ", coords.size(), " coordinates for ", dims_.size(), " dimensions"));
  }
  int rank = 0;
  for (size_t i = dims_.size(); i-- > 0;) {
    if (coords[i] < 0 || coords[i] >= dims_[i].size) {
      return absl::OutOfRangeError(absl::StrCat("rank grid: ", dims_[i].name, "=", coords[i],
                                                " is outside [0, ", dims_[i].size, ")"));
    }
    rank = rank * dims_[i].size + coords[i];
  }
  return rank;
}

absl::StatusOr<std::vector<bool>> RankGrid::AlongMask(const std::vector<std::string>& along) const {
  std::vector<bool> mask(dims_.size(), false);
  for (const std::string& name : along) {
    int i = IndexOf(name);
    if (i < 0) {
      std::vector<std::string> names;
      for (const GridDim& d : dims_) names.push_back(d.name);
      return absl::InvalidArgumentError(absl::StrCat(
          "rank grid has no dimension '", name, "' (it has ", absl::StrJoin(names, ", "), ")"));
    }
    mask[i] = true;
  }
  return mask;
}

absl::StatusOr<std::vector<int>> RankGrid::Group(int rank,
                                                 const std::vector<std::string>& along) const {
  ASSIGN_OR_RETURN(std::vector<bool> mask, AlongMask(along));
  ASSIGN_OR_RETURN(std::vector<int> coords, Coordinates(rank));
  // Enumerate the along-dimensions as one mixed-radix counter; the others stay fixed.
  for (size_t i = 0; i < dims_.size(); ++i) {
    if (mask[i]) coords[i] = 0;
  }
  std::vector<int> group;
  while (true) {
    ASSIGN_OR_RETURN(int member, RankAt(coords));
    group.push_back(member);
    size_t i = 0;
    for (; i < dims_.size(); ++i) {
      if (!mask[i]) continue;
      if (++coords[i] < dims_[i].size) break;
      coords[i] = 0;
    }
    if (i == dims_.size()) break;
  }
  std::sort(group.begin(), group.end());
  return group;
}

absl::StatusOr<std::vector<std::vector<int>>> RankGrid::Groups(
    const std::vector<std::string>& along) const {
  RETURN_IF_ERROR(AlongMask(along).status());
  std::vector<std::vector<int>> groups;
  std::vector<bool> seen(world_size_, false);
  for (int r = 0; r < world_size_; ++r) {
    if (seen[r]) continue;
    ASSIGN_OR_RETURN(std::vector<int> group, Group(r, along));
    for (int m : group) seen[m] = true;
    groups.push_back(std::move(group));
  }
  return groups;
}

absl::StatusOr<RankGrid> RankGrid::Split(const std::string& dim, std::vector<GridDim> parts) const {
  int i = IndexOf(dim);
  if (i < 0) {
    return absl::InvalidArgumentError(absl::StrCat("rank grid has no dimension '", dim, "'"));
  }
  long long product = 1;
  std::vector<std::string> sizes;
  for (const GridDim& p : parts) {
    product *= p.size;
    sizes.push_back(absl::StrCat(p.name, "=", p.size));
  }
  if (product != dims_[i].size) {
    return absl::InvalidArgumentError(absl::StrCat("rank grid: cannot split ", dim, "=",
                                                   dims_[i].size, " into ",
                                                   absl::StrJoin(sizes, " x ")));
  }
  std::vector<GridDim> dims(dims_.begin(), dims_.begin() + i);
  dims.insert(dims.end(), parts.begin(), parts.end());
  dims.insert(dims.end(), dims_.begin() + i + 1, dims_.end());
  return Create(std::move(dims));
}

std::string RankGrid::Describe() const {
  std::vector<std::string> sizes;
  for (const GridDim& d : dims_) sizes.push_back(absl::StrCat(d.name, " ", d.size));
  std::string out = absl::StrCat("grid: world ", world_size_, " = ", absl::StrJoin(sizes, " x "),
                                 " (", dims_.front().name, " varies fastest)\n");
  constexpr int kMaxListed = 64;
  for (int r = 0; r < world_size_; ++r) {
    if (r == kMaxListed) {
      absl::StrAppend(&out, "  ... ", world_size_ - kMaxListed, " more ranks\n");
      break;
    }
    std::vector<int> coords = *Coordinates(r);
    std::vector<std::string> parts;
    for (size_t i = 0; i < dims_.size(); ++i) {
      parts.push_back(absl::StrCat(dims_[i].name, "=", coords[i]));
    }
    absl::StrAppend(&out, "  rank ", r, ": ", absl::StrJoin(parts, " "));
    for (const GridDim& d : dims_) {
      if (d.size == 1) continue;
      std::vector<int> group = *Group(r, {d.name});
      absl::StrAppend(&out, "  ", d.name, "-group {", absl::StrJoin(group, ","), "}");
    }
    absl::StrAppend(&out, "\n");
  }
  return out;
}

}  // namespace stagehand::runtime
