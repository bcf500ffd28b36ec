// The cluster side of tools/launch: starts one tools/worker process per rank (on this host,
// or over ssh on the hosts of a hostfile), passes each its rank, the coordinator's address
// and a fresh join token through the environment, prefixes their output with the rank,
// watches them, stops every worker when one fails, and merges the ranks' trace files.
// Not a worker and not a trainer.
#ifndef STAGEHAND_TOOLS_CLUSTER_LAUNCHER_H_
#define STAGEHAND_TOOLS_CLUSTER_LAUNCHER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tools/train_flags.h"

namespace stagehand::tools {

struct ClusterLaunchOptions {
  int nprocs = 0;                  // workers (0 = one per hostfile slot)
  std::vector<std::string> hosts;  // per rank; empty = every rank on this host
  std::string bind = "127.0.0.1";  // rank 0 publishes the coordinator here
  std::string worker;              // path of tools/worker
  std::vector<std::string> worker_args;
  double grace_s = 5;  // after a failure, how long the others get to leave
  std::string ssh = "ssh";
  // Restarts: when a rank fails after the cluster came up, stop the rest and start the
  // whole cluster again from the newest complete checkpoint this launch wrote, up to
  // `restarts` times (workers get --resume_step=N and STAGEHAND_RESTART=k).
  int restarts = 0;
  std::string checkpoint_dir;  // must be set when restarts > 0
  bool resume = false;         // the first attempt resumed (--resume)
  // --trace=PATH: every worker writes RankTraceFile(PATH, R); once all finished, the
  // launcher merges them onto one clock (MergeTraces) into PATH. Each attempt starts by
  // removing the ranks' files, so after a restart only the successful attempt's are merged.
  std::string trace;
  // The ranks that write trace files (empty: every rank). With --dp, replica 0's ranks: the
  // merged trace is one pipeline's, as in one process.
  std::vector<int> trace_ranks;
};

// Runs the cluster to its end, restarting it as `options.restarts` allows. Returns the
// launch's exit code (0 = every rank finished); prints "launch: error: ..." naming the
// failed rank and its last action otherwise.
int RunCluster(const ClusterLaunchOptions& options);

// A fresh random join token (128 bits, hex).
absl::StatusOr<std::string> NewJoinToken();

// The variables (as in `environ`) that workers on other hosts must see as the launcher does, since
// ssh passes no environment: UCX_* (transports), OPENBLAS_* and OMP_* / GOMP_* (which kernels
// run and how: OPENBLAS_CORETYPE changes the bits of every GEMM, so a worker without it would
// break bitwise parity). Sorted by name.
std::vector<std::pair<std::string, std::string>> ForwardedEnvironment(char** variables);

// The ssh command line that starts `argv` on `host` with `env` set (quoted for a shell).
std::vector<std::string> SshCommand(const std::string& ssh, const std::string& host,
                                    const std::vector<std::pair<std::string, std::string>>& env,
                                    const std::vector<std::string>& argv);

// The launch flags that select cluster mode, and their use: true when --nprocs or
// --hostfile was given. ClusterOptionsFromFlags builds the options (forwarding every shared
// training flag to the workers; `train` is their validated value); InvalidArgument for an
// unreadable hostfile or one with too few slots.
bool ClusterRequested();
absl::StatusOr<ClusterLaunchOptions> ClusterOptionsFromFlags(const char* argv0,
                                                             const TrainConfig& train);

}  // namespace stagehand::tools

#endif  // STAGEHAND_TOOLS_CLUSTER_LAUNCHER_H_
