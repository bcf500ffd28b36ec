// Tests of the trace helpers: lane names, span labels, flow ids and the ready-to-start waits.
#include "runtime/trace/trace.h"

#include "gtest/gtest.h"

namespace stagehand::runtime::trace {
namespace {

Span Make(Lane lane, int stage, ActionKind kind, int chunk, int mb, double begin, double end,
          int peer = -1) {
  Span s;
  s.lane = lane;
  s.stage = stage;
  s.kind = kind;
  s.chunk = chunk;
  s.microbatch = mb;
  s.begin_us = begin;
  s.end_us = end;
  s.peer = peer;
  s.step = 1;
  return s;
}

TEST(TraceModelTest, LaneNamesRoundTrip) {
  for (Lane lane : {Lane::kCompute, Lane::kSend, Lane::kRecv, Lane::kAllToAll}) {
    Lane back;
    ASSERT_TRUE(ParseLane(LaneName(lane), &back));
    EXPECT_EQ(back, lane);
  }
  Lane unused;
  EXPECT_FALSE(ParseLane("disk", &unused));
}

TEST(TraceModelTest, LabelsNameTheActionAndPeer) {
  EXPECT_EQ(SpanLabel(Make(Lane::kCompute, 1, ActionKind::kForward, 1, 3, 0, 1)), "F c1 mb3");
  EXPECT_EQ(SpanLabel(Make(Lane::kSend, 0, ActionKind::kSendForward, 1, 3, 0, 1, 1)),
            "SEND_F c1 mb3 -> s1");
  EXPECT_EQ(SpanLabel(Make(Lane::kRecv, 1, ActionKind::kRecvBackward, 0, 2, 0, 1, 2)),
            "RECV_B c0 mb2 <- s2");
  EXPECT_EQ(SpanLabel(Make(Lane::kCompute, 1, ActionKind::kOptimizer, 0, 0, 0, 1)), "OPTIM");
  Span dispatch = Make(Lane::kAllToAll, 1, ActionKind::kForward, 1, 3, 0, 1);
  dispatch.layer = 2;
  dispatch.part = SubStepKind::kDispatch;
  EXPECT_EQ(SpanLabel(dispatch), "dispatch F3 c1 L2");
}

TEST(TraceModelTest, SendAndReceiveShareAFlowIdThatIsExactInJson) {
  const Span send = Make(Lane::kSend, 0, ActionKind::kSendForward, 1, 3, 0, 1, 1);
  const Span recv = Make(Lane::kRecv, 1, ActionKind::kRecvForward, 1, 3, 0, 2, 0);
  EXPECT_EQ(TransferFlowId(send), TransferFlowId(recv));
  EXPECT_LT(TransferFlowId(send), uint64_t{1} << 53);
  EXPECT_NE(TransferFlowId(send),
            TransferFlowId(Make(Lane::kSend, 0, ActionKind::kSendForward, 1, 4, 0, 1, 1)));
  Span next_step = send;
  next_step.step = 2;
  EXPECT_NE(TransferFlowId(send), TransferFlowId(next_step));
}

TEST(TraceModelTest, WaitsFollowTheStepGraph) {
  Trace t;
  t.num_stages = 2;
  t.num_chunks = 2;
  t.steps.push_back(StepSpan{1, 0, 100});
  t.spans = {
      Make(Lane::kCompute, 0, ActionKind::kForward, 0, 0, 2, 10),          // ready at 0
      Make(Lane::kRecv, 1, ActionKind::kRecvForward, 1, 0, 10, 15, 0),     // arrives at 15
      Make(Lane::kCompute, 1, ActionKind::kForward, 1, 0, 16, 20),         // waits 1
      Make(Lane::kCompute, 1, ActionKind::kBackwardInput, 1, 0, 25, 30),   // F done at 20
      Make(Lane::kCompute, 1, ActionKind::kBackwardWeight, 1, 0, 40, 45),  // B done at 30
      Make(Lane::kRecv, 0, ActionKind::kRecvBackward, 0, 0, 30, 33, 1),    // arrives at 33
      Make(Lane::kCompute, 0, ActionKind::kBackward, 0, 0, 35, 40),        // max(10, 33)
      Make(Lane::kCompute, 0, ActionKind::kOptimizer, 0, 0, 50, 60),
  };
  ComputeWaits(&t);
  EXPECT_DOUBLE_EQ(t.spans[0].wait_us, 2);
  EXPECT_DOUBLE_EQ(t.spans[2].wait_us, 1);
  EXPECT_DOUBLE_EQ(t.spans[3].wait_us, 5);
  EXPECT_DOUBLE_EQ(t.spans[4].wait_us, 10);
  EXPECT_DOUBLE_EQ(t.spans[6].wait_us, 2);
  EXPECT_DOUBLE_EQ(t.spans[7].wait_us, -1);  // not a step-graph action
}

TEST(TraceModelTest, LocalInputsCountFromTheProducersEnd) {
  Trace t;  // two chunks on one stage (interleaved-style): no receive in between
  t.num_stages = 1;
  t.num_chunks = 2;
  t.steps.push_back(StepSpan{1, 0, 100});
  t.spans = {
      Make(Lane::kCompute, 0, ActionKind::kForward, 0, 0, 0, 5),
      Make(Lane::kCompute, 0, ActionKind::kForward, 1, 0, 7, 9),
  };
  ComputeWaits(&t);
  EXPECT_DOUBLE_EQ(t.spans[1].wait_us, 2);
}

}  // namespace
}  // namespace stagehand::runtime::trace
