// Where a worker learns who it is: its rank, the number of ranks, the coordinator's
// address and the join token, from the launcher's STAGEHAND_* variables or, under Slurm
// (srun), from SLURM_PROCID / SLURM_NTASKS / SLURM_JOB_NODELIST. Also the hostfile
// format of `launch --hostfile`, and the name of a rank's own trace file. Pure parsing: no
// processes, no sockets.
#ifndef STAGEHAND_TOOLS_CLUSTER_RANK_ENV_H_
#define STAGEHAND_TOOLS_CLUSTER_RANK_ENV_H_

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace stagehand::tools {

inline constexpr char kRankVar[] = "STAGEHAND_RANK";
inline constexpr char kWorldSizeVar[] = "STAGEHAND_WORLD_SIZE";
inline constexpr char kCoordinatorVar[] = "STAGEHAND_COORDINATOR";  // host:port
inline constexpr char kTokenVar[] = "STAGEHAND_JOIN_TOKEN";
inline constexpr char kBindVar[] = "STAGEHAND_BIND";
// The worker's index among the workers on its host (its GPU under --device=cuda); Slurm's is
// SLURM_LOCALID.
inline constexpr char kLocalRankVar[] = "STAGEHAND_LOCAL_RANK";
// Under Slurm the coordinator port is STAGEHAND_PORT, else this base + SLURM_JOB_ID % 10000.
inline constexpr int kSlurmPortBase = 40000;

struct RankEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;  // among the ranks on this host (0 when neither variable is set)
  std::string coordinator_host;
  int coordinator_port = 0;
  std::string token;
  std::string bind = "127.0.0.1";  // the address rank 0 publishes on
  bool from_slurm = false;
};

// Reads the variables through `getenv` (returns "" for unset). STAGEHAND_* win over SLURM_*.
// Every problem is an InvalidArgument naming the variable.
absl::StatusOr<RankEnv> ResolveRankEnv(
    const std::function<std::string(const std::string&)>& getenv);

// Each rank's index among the ranks on its host: `hosts` holds each rank's host (a hostfile's
// slots in rank order); empty: every rank on this host, so rank r is local rank r.
std::vector<int> LocalRanks(const std::vector<std::string>& hosts, int nprocs);

// Expands a Slurm node list: "n1,gpu[01-03,07],x" -> n1 gpu01 gpu02 gpu03 gpu07 x.
absl::StatusOr<std::vector<std::string>> ExpandNodeList(const std::string& list);

// A hostfile: one host per line, optionally "slots=N" (workers on that host, default 1);
// '#' starts a comment. Returns one entry per worker slot, in order.
absl::StatusOr<std::vector<std::string>> ParseHostfile(const std::string& text);

// The file rank `rank` writes its trace to for `launch --trace=PATH`: "<stem>.rank<R>.json"
// for PATH "<stem>.json", "<PATH>.rank<R>" otherwise (as --save_params names its files).
// The launcher merges these into PATH.
std::string RankTraceFile(const std::string& path, int rank);

}  // namespace stagehand::tools

#endif  // STAGEHAND_TOOLS_CLUSTER_RANK_ENV_H_
