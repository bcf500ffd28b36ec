// Status lines: formatting and strict parsing.
#include "runtime/cluster/status_line.h"

#include "nlohmann/json.hpp"

namespace stagehand::runtime {
namespace {

const char* EventName(ClusterEvent e) {
  switch (e) {
    case ClusterEvent::kClusterUp:
      return "cluster_up";
    case ClusterEvent::kCheckpoint:
      return "checkpoint";
    case ClusterEvent::kRankLost:
      return "rank_lost";
  }
  return "";
}

}  // namespace

std::string FormatStatusLine(const ClusterStatus& status) {
  nlohmann::ordered_json j = {{"v", kStatusLineVersion}, {"event", EventName(status.event)}};
  if (status.event == ClusterEvent::kCheckpoint) j["step"] = status.step;
  if (status.event == ClusterEvent::kRankLost) {
    j["rank"] = status.rank;
    j["last_action"] = status.last_action;
  }
  return std::string(kStatusLinePrefix) + j.dump();
}

std::optional<ClusterStatus> ParseStatusLine(std::string_view line) {
  if (line.substr(0, kStatusLinePrefix.size()) != kStatusLinePrefix) return std::nullopt;
  const nlohmann::json j = nlohmann::json::parse(line.substr(kStatusLinePrefix.size()), nullptr,
                                                 /*allow_exceptions=*/false);
  if (!j.is_object() || j.value("v", 0) != kStatusLineVersion || !j.contains("event") ||
      !j["event"].is_string()) {
    return std::nullopt;
  }
  const std::string event = j["event"];
  ClusterStatus s;
  if (event == "cluster_up") {
    s.event = ClusterEvent::kClusterUp;
  } else if (event == "checkpoint" && j.contains("step") && j["step"].is_number_integer()) {
    s.event = ClusterEvent::kCheckpoint;
    s.step = j["step"].get<int64_t>();
  } else if (event == "rank_lost" && j.contains("rank") && j["rank"].is_number_integer() &&
             j.contains("last_action") && j["last_action"].is_string()) {
    s.event = ClusterEvent::kRankLost;
    s.rank = j["rank"].get<int>();
    s.last_action = j["last_action"].get<std::string>();
  } else {
    return std::nullopt;
  }
  return s;
}

}  // namespace stagehand::runtime
