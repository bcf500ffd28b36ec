// --list_planners text and the launcher's worker-planner check (runs `worker --list_planners`).
// Not a process supervisor: one short-lived child, read to its end.
#include "tools/planner_list.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"

namespace stagehand::tools {

std::string PlannerListText(const runtime::PlannerRegistry& registry) {
  std::string text;
  for (const std::string& name : registry.Names()) {
    absl::StrAppend(&text, absl::StrFormat("%-12s %s\n", name, registry.Find(name)->description()));
  }
  return text;
}

std::vector<std::string> PlannerNamesFromList(absl::string_view text) {
  std::vector<std::string> names;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripLeadingAsciiWhitespace(line);
    if (line.empty()) continue;
    names.emplace_back(line.substr(0, line.find_first_of(" \t\r")));
  }
  return names;
}

absl::Status CheckWorkerKnowsPlanner(const std::string& worker, const std::string& planner) {
  if (access(worker.c_str(), X_OK) != 0) return absl::OkStatus();
  const std::string command = absl::StrCat("'", absl::StrReplaceAll(worker, {{"'", "'\\''"}}),
                                           "' --list_planners 2>/dev/null");
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot run ", worker, " --list_planners"));
  }
  std::string output;
  char buffer[4096];
  for (std::size_t n; (n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0;)
    output.append(buffer, n);
  if (pclose(pipe) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("the worker binary ", worker,
                     " failed to list its planners (--list_planners): it may "
                     "be older than launch; rebuild //tools:worker"));
  }
  const std::vector<std::string> names = PlannerNamesFromList(output);
  if (std::find(names.begin(), names.end(), planner) != names.end()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "planner ", planner, " is linked into launch but not into the worker binary ", worker,
      " (it has: ", absl::StrJoin(names, ", "),
      "), so every rank would fail at start; add the "
      "planner's library to the deps of //tools:planners, which launch and worker both take, "
      "and rebuild"));
}

}  // namespace stagehand::tools
