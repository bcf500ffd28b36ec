// Tests of the planner list and of the launcher's check against a worker binary (a shell
// script stands in for tools/worker). Not a cluster test: nothing is launched but the script.
#include "tools/planner_list.h"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stagehand::tools {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class Named : public runtime::PlannerDefinition {
 public:
  explicit Named(std::string name) : name_(std::move(name)) {}
  std::string name() const override { return name_; }
  std::string description() const override { return "a test planner"; }
  absl::StatusOr<runtime::StepSpec> MakeSpec(const runtime::PlannerOptions&) const override {
    return absl::UnimplementedError("not planned");
  }
  std::unique_ptr<runtime::Planner> MakePlanner(const runtime::StepSpec&, int) const override {
    return nullptr;
  }

 private:
  std::string name_;
};

// An executable script that prints `output` and exits with `code`.
std::string FakeWorker(const std::string& name, const std::string& output, int code = 0) {
  const std::string path = std::string(std::getenv("TEST_TMPDIR")) + "/" + name;
  std::ofstream(path) << "#!/bin/sh\nprintf '" << output << "'\nexit " << code << "\n";
  chmod(path.c_str(), 0755);
  return path;
}

TEST(PlannerListTest, ListsNamesSortedAndReadsThemBack) {
  runtime::PlannerRegistry registry;
  registry.Register(std::make_unique<Named>("zb"));
  registry.Register(std::make_unique<Named>("gpipe"));
  const std::string text = PlannerListText(registry);
  EXPECT_EQ(text, "gpipe        a test planner\nzb           a test planner\n");
  EXPECT_THAT(PlannerNamesFromList(text), ElementsAre("gpipe", "zb"));
}

TEST(CheckWorkerKnowsPlannerTest, PassesWhenTheWorkerListsThePlanner) {
  const std::string worker = FakeWorker("knows", "1f1b   x\\nmine   y\\n");
  EXPECT_TRUE(CheckWorkerKnowsPlanner(worker, "mine").ok());
}

TEST(CheckWorkerKnowsPlannerTest, RefusesAPlannerTheWorkerLacks) {
  const std::string worker = FakeWorker("lacks", "1f1b   x\\ngpipe  y\\n");
  const absl::Status s = CheckWorkerKnowsPlanner(worker, "mine");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("planner mine is linked into launch but not into the worker "
                                     "binary " +
                                     worker + " (it has: 1f1b, gpipe)"));
  EXPECT_THAT(s.message(), HasSubstr("add the planner's library to the deps of //tools:planners"));
}

TEST(CheckWorkerKnowsPlannerTest, AWorkerThatCannotListIsRefused) {
  const std::string worker = FakeWorker("old", "", 1);
  EXPECT_THAT(CheckWorkerKnowsPlanner(worker, "1f1b").message(),
              HasSubstr("failed to list its planners"));
}

TEST(CheckWorkerKnowsPlannerTest, AMissingWorkerIsLeftToTheLauncher) {
  EXPECT_TRUE(CheckWorkerKnowsPlanner("/nonexistent/worker", "1f1b").ok());
}

}  // namespace
}  // namespace stagehand::tools
