// Rank environment, Slurm node lists and hostfiles.
#include "tools/cluster/rank_env.h"

#include <algorithm>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace stagehand::tools {
namespace {

absl::StatusOr<int> Int(const std::string& name, const std::string& value) {
  int v = 0;
  if (!absl::SimpleAtoi(value, &v)) {
    return absl::InvalidArgumentError(absl::StrCat(name, "='", value, "' is not an integer"));
  }
  return v;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ExpandNodeList(const std::string& list) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < list.size()) {
    // One item: prefix, optionally [ranges], up to the next top-level comma.
    size_t j = i;
    while (j < list.size() && list[j] != ',' && list[j] != '[') ++j;
    std::string prefix = list.substr(i, j - i);
    if (j < list.size() && list[j] == '[') {
      size_t close = list.find(']', j);
      if (close == std::string::npos) {
        return absl::InvalidArgumentError(absl::StrCat("node list '", list, "': unclosed '['"));
      }
      for (absl::string_view range : absl::StrSplit(list.substr(j + 1, close - j - 1), ',')) {
        std::vector<std::string> ends = absl::StrSplit(range, '-');
        int lo = 0, hi = 0;
        if (ends.size() > 2 || !absl::SimpleAtoi(ends[0], &lo) ||
            !absl::SimpleAtoi(ends.back(), &hi) || hi < lo) {
          return absl::InvalidArgumentError(
              absl::StrCat("node list '", list, "': bad range '", range, "'"));
        }
        const size_t width = ends[0].size();
        for (int n = lo; n <= hi; ++n) {
          std::string num = std::to_string(n);
          if (num.size() < width) num.insert(0, width - num.size(), '0');
          out.push_back(prefix + num);
        }
      }
      j = close + 1;
    } else if (!prefix.empty()) {
      out.push_back(prefix);
    }
    if (j < list.size() && list[j] != ',') {
      return absl::InvalidArgumentError(
          absl::StrCat("node list '", list, "': expected ',' at ", j));
    }
    i = j + 1;
  }
  if (out.empty()) return absl::InvalidArgumentError("empty node list");
  return out;
}

absl::StatusOr<std::vector<std::string>> ParseHostfile(const std::string& text) {
  std::vector<std::string> slots;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = line.substr(0, line.find('#'));
    std::vector<absl::string_view> words =
        absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (words.empty()) continue;
    int n = 1;
    for (size_t w = 1; w < words.size(); ++w) {
      absl::string_view word = words[w];
      if (!absl::ConsumePrefix(&word, "slots=") || !absl::SimpleAtoi(word, &n) || n < 1) {
        return absl::InvalidArgumentError(absl::StrCat("hostfile line ", line_number, ": '",
                                                       words[w], "' (expected slots=N, N >= 1)"));
      }
    }
    for (int k = 0; k < n; ++k) slots.emplace_back(words[0]);
  }
  if (slots.empty()) return absl::InvalidArgumentError("hostfile lists no hosts");
  return slots;
}

std::vector<int> LocalRanks(const std::vector<std::string>& hosts, int nprocs) {
  std::vector<int> local(nprocs, 0);
  std::map<std::string, int> seen;
  for (int r = 0; r < nprocs; ++r) {
    local[r] = hosts.empty() ? r : seen[r < static_cast<int>(hosts.size()) ? hosts[r] : ""]++;
  }
  return local;
}

absl::StatusOr<RankEnv> ResolveRankEnv(
    const std::function<std::string(const std::string&)>& getenv) {
  RankEnv env;
  if (std::string bind = getenv(kBindVar); !bind.empty()) env.bind = bind;
  env.token = getenv(kTokenVar);
  if (env.token.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(kTokenVar, " is not set: workers join only with the launch's token"));
  }
  if (!getenv(kRankVar).empty()) {
    absl::StatusOr<int> rank = Int(kRankVar, getenv(kRankVar));
    if (!rank.ok()) return rank.status();
    absl::StatusOr<int> world = Int(kWorldSizeVar, getenv(kWorldSizeVar));
    if (!world.ok()) return world.status();
    env.rank = *rank;
    env.world_size = *world;
    std::string coordinator = getenv(kCoordinatorVar);
    size_t colon = coordinator.rfind(':');
    if (colon == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(kCoordinatorVar, "='", coordinator, "' is not host:port"));
    }
    env.coordinator_host = coordinator.substr(0, colon);
    absl::StatusOr<int> port = Int(kCoordinatorVar, coordinator.substr(colon + 1));
    if (!port.ok()) return port.status();
    env.coordinator_port = *port;
  } else if (!getenv("SLURM_PROCID").empty()) {
    env.from_slurm = true;
    absl::StatusOr<int> rank = Int("SLURM_PROCID", getenv("SLURM_PROCID"));
    if (!rank.ok()) return rank.status();
    absl::StatusOr<int> world = Int("SLURM_NTASKS", getenv("SLURM_NTASKS"));
    if (!world.ok()) return world.status();
    env.rank = *rank;
    env.world_size = *world;
    std::string list = getenv("SLURM_JOB_NODELIST");
    if (list.empty()) list = getenv("SLURM_NODELIST");
    absl::StatusOr<std::vector<std::string>> nodes = ExpandNodeList(list);
    if (!nodes.ok()) return nodes.status();
    env.coordinator_host = nodes->front();
    if (std::string port = getenv("STAGEHAND_PORT"); !port.empty()) {
      absl::StatusOr<int> p = Int("STAGEHAND_PORT", port);
      if (!p.ok()) return p.status();
      env.coordinator_port = *p;
    } else {
      absl::StatusOr<int> job = Int("SLURM_JOB_ID", getenv("SLURM_JOB_ID"));
      if (!job.ok()) return job.status();
      env.coordinator_port = kSlurmPortBase + *job % 10000;
    }
    // Across nodes rank 0 must listen beyond loopback unless told otherwise.
    if (getenv(kBindVar).empty()) env.bind = "0.0.0.0";
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "neither ", kRankVar, " (set by tools/launch) nor SLURM_PROCID (srun) is set"));
  }
  for (const char* var : {kLocalRankVar, "SLURM_LOCALID"}) {
    if (getenv(var).empty()) continue;
    absl::StatusOr<int> local = Int(var, getenv(var));
    if (!local.ok()) return local.status();
    if (*local < 0 || *local >= std::max(env.world_size, 1)) {
      return absl::InvalidArgumentError(
          absl::StrCat(var, "=", *local, ": not a local rank of ", env.world_size, " ranks"));
    }
    env.local_rank = *local;
    break;
  }
  if (env.world_size < 1 || env.rank < 0 || env.rank >= env.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", env.rank, " of ", env.world_size, " ranks"));
  }
  if (env.coordinator_port <= 0 || env.coordinator_port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("coordinator port ", env.coordinator_port, " out of range"));
  }
  return env;
}

std::string RankTraceFile(const std::string& path, int rank) {
  const std::string ext = ".json";
  if (path.size() > ext.size() && path.compare(path.size() - ext.size(), ext.size(), ext) == 0) {
    return absl::StrCat(path.substr(0, path.size() - ext.size()), ".rank", rank, ext);
  }
  return absl::StrCat(path, ".rank", rank);
}

}  // namespace stagehand::tools
