// What the built-in planners' tests share: an action order as one line of text, the check
// that a planner is registered under its name, and the comparison of its unit-cost plan at a
// given shape with a golden file. Not a planner test framework: each test states its own rules.
#ifndef STAGEHAND_RUNTIME_PLANNERS_PLANNER_TEST_UTIL_H_
#define STAGEHAND_RUNTIME_PLANNERS_PLANNER_TEST_UTIL_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "runtime/action.h"
#include "runtime/planner.h"
#include "runtime/simulator.h"
#include "tests/golden/golden.h"

namespace stagehand::runtime::testing {

// "F c1 mb0 | F c1 mb1 | B c1 mb0": the actions of one stage without their stage.
inline std::string OrderText(const std::vector<Action>& order) {
  std::string text;
  for (const Action& action : order) {
    if (!text.empty()) text += " | ";
    text += ActionToStringWithoutStage(action);
  }
  return text;
}

// The definition registered as `name` in PlannerRegistry::Default() (nullptr and a test
// failure if there is none, or if it answers to another name).
inline const PlannerDefinition* ExpectRegistered(const std::string& name) {
  absl::StatusOr<const PlannerDefinition*> definition = PlannerRegistry::Default().Get(name);
  EXPECT_TRUE(definition.ok()) << definition.status();
  if (!definition.ok()) return nullptr;
  EXPECT_EQ((*definition)->name(), name);
  return *definition;
}

// Simulates `definition` at unit costs with `options` and compares the executed plan
// (FormatPlan) with tests/golden/<golden> (see tests/golden/golden.h to rewrite it).
inline void ExpectUnitCostPlanMatchesGolden(const PlannerDefinition& definition,
                                            const PlannerOptions& options,
                                            const std::string& golden) {
  absl::StatusOr<SimResult> result = Simulate(definition, options);
  ASSERT_TRUE(result.ok()) << result.status();
  stagehand::testing::ExpectMatchesGolden(golden, FormatPlan(*result));
}

}  // namespace stagehand::runtime::testing

#endif  // STAGEHAND_RUNTIME_PLANNERS_PLANNER_TEST_UTIL_H_
