// SplitAtExperts and ExpertNamesOf.
#include "runtime/train/expert_layout.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "runtime/grid/rank_grid.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {
namespace {

// `name` ("h.3.mlp.experts.5.c_fc.weight") with its expert id replaced by `expert`.
std::string WithExpert(const std::string& name, int expert) {
  static constexpr char kExperts[] = "mlp.experts.";
  const size_t at = name.find(kExperts);
  if (at == std::string::npos) return name;
  const size_t id = at + sizeof(kExperts) - 1;
  const size_t end = name.find('.', id);
  return absl::StrCat(name.substr(0, id), expert, end == std::string::npos ? "" : name.substr(end));
}

}  // namespace

std::vector<GradientPiece> SplitAtExperts(const std::vector<models::ParamInfo>& infos,
                                          const ElementRange& range) {
  std::vector<GradientPiece> pieces;
  for (const models::ParamInfo& info : infos) {
    const ElementRange part = Intersect(range, {info.offset, info.offset + info.size});
    if (part.size() == 0) continue;
    const bool expert = info.expert >= 0;
    if (!pieces.empty() && pieces.back().expert == expert &&
        pieces.back().range.end == part.begin) {
      pieces.back().range.end = part.end;
    } else {
      pieces.push_back({part, expert});
    }
  }
  return pieces;
}

ShardLayout ShardLayoutOf(const std::vector<models::ParamInfo>& infos, int64_t n,
                          bool split_experts) {
  ShardLayout layout;
  const std::vector<GradientPiece> pieces =
      split_experts ? SplitAtExperts(infos, {0, n}) : std::vector<GradientPiece>{{{0, n}, false}};
  for (const GradientPiece& piece : pieces) {
    int64_t& size = piece.expert ? layout.experts : layout.dense;
    layout.pieces.push_back({piece, size});
    size += piece.range.size();
  }
  return layout;
}

std::vector<std::string> ExpertNamesOf(const std::vector<models::ParamInfo>& infos, int from,
                                       int to) {
  std::vector<std::string> names;
  for (size_t i = 0; i < infos.size(); ++i) {
    if (infos[i].expert < 0) continue;
    size_t run = 0;
    int first = infos[i].expert, last = infos[i].expert;
    while (i + run < infos.size() && infos[i + run].expert >= 0) {
      first = std::min(first, infos[i + run].expert);
      last = std::max(last, infos[i + run].expert);
      ++run;
    }
    const int shift = (to - from) * (last - first + 1);
    for (size_t r = 0; r < run; ++r) {
      names.push_back(WithExpert(infos[i + r].name, infos[i + r].expert + shift));
    }
    i += run - 1;
  }
  return names;
}

absl::StatusOr<ExpertSeat> ExpertSeatOf(int dp, int ep, int num_stages, int replica) {
  ASSIGN_OR_RETURN(RankGrid pipelines, RankGrid::DataPipeline(dp, num_stages));
  ASSIGN_OR_RETURN(RankGrid grid, pipelines.Split("dp", {{"ep", ep}, {"edp", dp / ep}}));
  ASSIGN_OR_RETURN(const int rank, pipelines.RankAt({replica, 0}));
  ExpertSeat seat;
  ASSIGN_OR_RETURN(seat.member, grid.Coordinate(rank, "ep"));
  ASSIGN_OR_RETURN(seat.edp, grid.Coordinate(rank, "edp"));
  return seat;
}

}  // namespace stagehand::runtime
