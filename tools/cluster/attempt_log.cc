// Reading status lines and deciding restarts.
#include "tools/cluster/attempt_log.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "runtime/cluster/status_line.h"

namespace stagehand::tools {

bool AttemptLog::Observe(int rank, std::string_view line) {
  std::optional<runtime::ClusterStatus> status = runtime::ParseStatusLine(line);
  if (!status.has_value()) return false;
  if (rank != 0) return true;  // only the coordinator reports; never echoed either way
  switch (status->event) {
    case runtime::ClusterEvent::kClusterUp:
      cluster_up = true;
      break;
    case runtime::ClusterEvent::kCheckpoint:
      checkpoint = status->step;
      break;
    case runtime::ClusterEvent::kRankLost:
      last_action[status->rank] = status->last_action;
      break;
  }
  return true;
}

RestartDecision DecideRestart(const RestartInputs& in, const std::string& checkpoint_dir) {
  RestartDecision d;
  if (in.restart >= in.restarts || in.interrupted) return d;
  if (!in.cluster_up) {
    d.why_not = "the cluster failed before every worker had joined";
    return d;
  }
  d.restart = true;
  d.resume_step = in.checkpoint >= 0 ? in.checkpoint : (in.resumed ? -1 : 0);
  d.from = in.checkpoint >= 0
               ? absl::StrCat("the checkpoint of step ", in.checkpoint, " in ", checkpoint_dir)
           : in.resumed ? "the checkpoint it resumed from"
                        : "step 0 (no complete checkpoint yet)";
  return d;
}

}  // namespace stagehand::tools
