// The cluster coordinator's machine-readable status lines: one line per event the launcher
// acts on (the cluster came up, a checkpoint was committed, a rank was lost), with a fixed
// JSON schema behind a fixed prefix, so that restarts never depend on human wording.
// Not a log format: the human lines stay as they are, and the launcher does not echo these.
#ifndef STAGEHAND_RUNTIME_CLUSTER_STATUS_LINE_H_
#define STAGEHAND_RUNTIME_CLUSTER_STATUS_LINE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace stagehand::runtime {

// Every status line starts with this, followed by one JSON object:
//   {"v":1,"event":"cluster_up"}
//   {"v":1,"event":"checkpoint","step":N}
//   {"v":1,"event":"rank_lost","rank":R,"last_action":"..."}
inline constexpr std::string_view kStatusLinePrefix = "@stagehand-status ";
inline constexpr int kStatusLineVersion = 1;

enum class ClusterEvent {
  kClusterUp,   // every worker joined and connected: a failure from now on may be restarted
  kCheckpoint,  // the checkpoint of `step` is complete (manifest committed)
  kRankLost,    // rank `rank` died or went silent; `last_action` is what it last reported
};

struct ClusterStatus {
  ClusterEvent event = ClusterEvent::kClusterUp;
  int64_t step = -1;
  int rank = -1;
  std::string last_action;
};

// The line (without a newline) for `status`.
std::string FormatStatusLine(const ClusterStatus& status);
// The status of `line`, or nullopt when it is not a status line (or one of another
// version, or malformed: such a line is never guessed at).
std::optional<ClusterStatus> ParseStatusLine(std::string_view line);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_CLUSTER_STATUS_LINE_H_
