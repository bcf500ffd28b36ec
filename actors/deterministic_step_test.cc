// Steps the actors of a 2-stage, 2-microbatch 1F1B step one message at a time under CAF's
// test coordinator (lanes run inline), checking after every message that each stage runs
// at most one compute action and that the actions start in 1F1B order.
#include <map>
#include <string>
#include <vector>

#include "actors/model_pipeline.h"
#include "actors/testing/deterministic_pipeline.h"
#include "gtest/gtest.h"

namespace stagehand::actors {
namespace {

struct Trace {
  std::map<int, std::vector<std::string>> started;  // stage -> actions in start order
  int messages = 0;
  StepOutcome outcome;
};

Trace RunOneStepMessageByMessage() {
  auto def = runtime::PlannerRegistry::Default().Get("1f1b");
  EXPECT_TRUE(def.ok());
  auto pipeline = BuildSyntheticPipeline(*def, {2, 2, 0}, {}, {}, /*deterministic=*/true);
  EXPECT_TRUE(pipeline.ok()) << pipeline.status();
  Pipeline& p = **pipeline;
  testing::OpenedPipeline opened = testing::Open(p);
  caf::scheduler::test_coordinator& sched = *opened.coordinator;
  const auto& stages = opened.stages;
  for (const auto* stage : stages) EXPECT_NE(stage, nullptr);
  caf::scoped_actor self{p.system()};
  Trace trace;
  self->send(p.driver(), step_atom::value, int64_t{1});
  std::map<int, std::vector<runtime::Action>> seen;
  while (sched.has_job()) {
    sched.run_once();
    ++trace.messages;
    // Inspect every stage actor's state after each message.
    for (int s = 0; s < static_cast<int>(stages.size()); ++s) {
      const auto& loop = stages[s]->state.loop;
      if (!loop) continue;
      std::vector<runtime::Action> running = loop->state().RunningActions();
      EXPECT_LE(running.size(), 1u) << "stage " << s << " runs two actions at once";
      for (const runtime::Action& a : running) {
        std::string text = runtime::ActionToStringWithoutStage(a);
        if (trace.started[s].empty() || trace.started[s].back() != text)
          trace.started[s].push_back(text);
      }
    }
    EXPECT_LT(trace.messages, 10000) << "the step does not converge";
    if (trace.messages >= 10000) break;
  }
  self->receive(
      [&](StepOutcome& out) { trace.outcome = std::move(out); },
      caf::after(std::chrono::seconds(5)) >> [&] { ADD_FAILURE() << "no reply from the driver"; });
  return trace;
}

TEST(DeterministicStepTest, StepCompletesAndRepeatsMessageForMessage) {
  Trace a = RunOneStepMessageByMessage();
  Trace b = RunOneStepMessageByMessage();
  EXPECT_TRUE(a.outcome.error.empty()) << a.outcome.error;
  EXPECT_EQ(a.outcome.busy_seconds.size(), 2u);
  EXPECT_GT(a.messages, 20);
  EXPECT_EQ(a.messages, b.messages);
  EXPECT_EQ(a.started, b.started);
  // 1F1B at P=2, M=2: stage 0 warms up with one forward; stage 1 alternates from the start.
  EXPECT_EQ(a.started[0],
            (std::vector<std::string>{"F c0 mb0", "F c0 mb1", "B c0 mb0", "B c0 mb1"}));
  EXPECT_EQ(a.started[1],
            (std::vector<std::string>{"F c1 mb0", "B c1 mb0", "F c1 mb1", "B c1 mb1"}));
}

}  // namespace
}  // namespace stagehand::actors
