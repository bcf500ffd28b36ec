// What the launcher learns from one start of the cluster, and whether to start it again.
// It reads only rank 0's machine-readable status lines (runtime/cluster/status_line.h),
// never the coordinator's human wording, so rewording a message cannot break restarts.
// Not a process watcher (launcher.cc forks, polls and kills).
#ifndef STAGEHAND_TOOLS_CLUSTER_ATTEMPT_LOG_H_
#define STAGEHAND_TOOLS_CLUSTER_ATTEMPT_LOG_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace stagehand::tools {

struct AttemptLog {
  std::map<int, std::string> last_action;  // rank -> as the coordinator reported it
  bool cluster_up = false;                 // every worker joined and connected
  int64_t checkpoint = -1;                 // the newest complete checkpoint's step

  // Reads one line of rank `rank`'s output. True when it was a status line (the launcher
  // does not echo those); status lines count from rank 0, the coordinator's, only.
  bool Observe(int rank, std::string_view line);
};

struct RestartInputs {
  int restart = 0;           // this attempt's restart count (0: the first start)
  int restarts = 0;          // --restarts
  bool cluster_up = false;   // the failed attempt came up before failing
  bool interrupted = false;  // the user interrupted the launch
  int64_t checkpoint = -1;   // the newest complete checkpoint this launch wrote, -1: none
  bool resumed = false;      // the first attempt resumed (--resume)
};

struct RestartDecision {
  bool restart = false;
  int64_t resume_step = 0;  // --resume_step for the next attempt (-1: the newest, as --resume)
  std::string from;         // where it restarts from, for the user
  std::string why_not;      // when not restarting although restarts were left, why
};

// After a failed attempt: restart while restarts are left, the cluster had come up and
// nobody interrupted; from this launch's newest checkpoint, else from where the first
// attempt started (the newest with --resume, else step 0).
RestartDecision DecideRestart(const RestartInputs& in, const std::string& checkpoint_dir);

}  // namespace stagehand::tools

#endif  // STAGEHAND_TOOLS_CLUSTER_ATTEMPT_LOG_H_
