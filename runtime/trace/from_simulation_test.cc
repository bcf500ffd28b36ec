// Tests of the simulator's trace: the same actions, transfers and times as SimResult.
#include "runtime/trace/from_simulation.h"

#include "gtest/gtest.h"
#include "runtime/planner.h"

namespace stagehand::runtime::trace {
namespace {

TEST(FromSimulationTest, EveryActionAndTransferOnItsLane) {
  auto def = PlannerRegistry::Default().Get("1f1b");
  ASSERT_TRUE(def.ok());
  auto spec = (*def)->MakeSpec({4, 8, 0});
  ASSERT_TRUE(spec.ok());
  CostModel cost;
  cost.transfer = 0.5;
  auto sim = SimulateSpec(**def, *spec, cost);
  ASSERT_TRUE(sim.ok()) << sim.status();
  SimulationTraceOptions options;
  options.transfer_bytes = 4096;
  const Trace t = TraceFromSimulation(*sim, *spec, options);
  EXPECT_TRUE(t.virtual_time);
  EXPECT_EQ(t.num_stages, 4);
  ASSERT_EQ(t.steps.size(), 1u);
  EXPECT_DOUBLE_EQ(t.steps[0].end_us, sim->step_time * 1000);
  int compute = 0, sends = 0, recvs = 0;
  for (const Span& s : t.spans) {
    compute += s.lane == Lane::kCompute;
    sends += s.lane == Lane::kSend;
    recvs += s.lane == Lane::kRecv;
    if (s.lane != Lane::kCompute) {
      EXPECT_EQ(s.bytes, 4096);
      EXPECT_DOUBLE_EQ(s.duration_us(), 500);
    } else {
      EXPECT_GE(s.wait_us, 0);
    }
  }
  EXPECT_EQ(compute, 64);
  EXPECT_EQ(sends, 48);
  EXPECT_EQ(recvs, 48);
  // Stage 3 holds one activation at a time: +1 after F, -1 after B.
  int peak = 0;
  for (const MemorySample& m : t.memory) {
    if (m.stage == 3) peak = std::max(peak, m.activations);
  }
  EXPECT_EQ(peak, 1);
}

}  // namespace
}  // namespace stagehand::runtime::trace
