// The planner list that `launch --list_planners` and `worker --list_planners` print, and the
// launcher's check, before any worker starts, that its worker binary knows the planner asked
// for (a user planner linked into launch alone would otherwise fail on every rank).
// Not a registry: the names come from PlannerRegistry, or from the worker's own list.
#ifndef STAGEHAND_TOOLS_PLANNER_LIST_H_
#define STAGEHAND_TOOLS_PLANNER_LIST_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "runtime/planner.h"

namespace stagehand::tools {

// One line per registered planner, sorted by name: "<name padded to 12> <description>".
std::string PlannerListText(const runtime::PlannerRegistry& registry);

// The names in text PlannerListText wrote: the first word of each non-empty line.
std::vector<std::string> PlannerNamesFromList(absl::string_view text);

// OK iff `worker --list_planners` names `planner`. FailedPrecondition naming the planner, the
// binary and the planners it has, with the fix (add the planner to //tools:planners), when it
// does not. OK when `worker` is not an executable file: the launcher reports that itself.
absl::Status CheckWorkerKnowsPlanner(const std::string& worker, const std::string& planner);

}  // namespace stagehand::tools

#endif  // STAGEHAND_TOOLS_PLANNER_LIST_H_
