// Tests of the per-lane recorder, written from one thread per lane as the runtime does.
#include "runtime/trace/recorder.h"

#include <thread>

#include "gtest/gtest.h"

namespace stagehand::runtime::trace {
namespace {

TEST(RecorderTest, BufferKeepsRecordsAcrossBlocks) {
  RecordBuffer<int> buffer;
  for (int i = 0; i < 10000; ++i) buffer.Append(i);
  ASSERT_EQ(buffer.size(), 10000u);
  for (int i = 0; i < 10000; i += 997) EXPECT_EQ(buffer[i], i);
}

TEST(RecorderTest, MustBeConfiguredOnceWithOneShape) {
  TraceRecorder recorder;
  EXPECT_EQ(recorder.Configure(0, 1, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(recorder.Configure(2, 2, 4).ok());
  EXPECT_TRUE(recorder.Configure(2, 2, 4).ok());
  EXPECT_EQ(recorder.Configure(4, 4, 4).code(), absl::StatusCode::kFailedPrecondition);
}

// One step of a 2-stage pipeline, each lane written by its own thread as in the runtime.
TEST(RecorderTest, CollectsEveryLaneOnOneClock) {
  TraceRecorder recorder("unit");
  ASSERT_TRUE(recorder.Configure(2, 2, 1).ok());
  recorder.SetActivationBytes({1000, 2000});
  const int64_t t0 = NowNanos();
  recorder.StepBegan(1, t0);
  const Transfer transfer{ActionKind::kSendForward, 0, 1, 1, 0};
  std::thread lane0(
      [&] { recorder.compute(0)->Record(ActionKind::kForward, 0, 0, t0 + 1000, t0 + 5000); });
  std::thread comm0([&] {
    recorder.send(0)->Record(ActionKind::kSendForward, 1, 1, 0, 64, t0 + 6000, t0 + 8000);
  });
  std::thread stage1([&] {
    recorder.stage(1)->InputArrived(transfer, 64, t0 + 9000);
    recorder.stage(1)->ComputeFinished(Action{1, ActionKind::kForward, 1, 0}, t0 + 12000);
    recorder.stage(1)->ComputeFinished(Action{1, ActionKind::kBackward, 1, 0}, t0 + 15000,
                                       /*device_in_use=*/4096, /*device_peak=*/8192);
  });
  lane0.join();
  comm0.join();
  stage1.join();
  recorder.StepEnded(1, t0 + 20000);

  const Trace trace = recorder.Collect();
  EXPECT_EQ(trace.process, "unit");
  EXPECT_EQ(trace.num_stages, 2);
  EXPECT_GT(trace.epoch_unix_us, 1.5e15);  // wall clock: after 2017
  ASSERT_EQ(trace.steps.size(), 1u);
  const double base = trace.steps[0].begin_us;
  EXPECT_NEAR(trace.steps[0].end_us - base, 20, 1e-9);
  ASSERT_EQ(trace.spans.size(), 3u);
  const Span& f = trace.spans[0];
  EXPECT_EQ(f.lane, Lane::kCompute);
  EXPECT_EQ(f.step, 1);
  EXPECT_NEAR(f.begin_us - base, 1, 1e-9);
  EXPECT_NEAR(f.wait_us, 1, 1e-9);  // ready when the step began
  const Span& send = trace.spans[1];
  EXPECT_EQ(send.lane, Lane::kSend);
  EXPECT_EQ(send.peer, 1);
  EXPECT_EQ(send.bytes, 64);
  const Span& recv = trace.spans[2];
  EXPECT_EQ(recv.lane, Lane::kRecv);
  EXPECT_EQ(recv.kind, ActionKind::kRecvForward);
  EXPECT_EQ(recv.peer, 0);
  EXPECT_DOUBLE_EQ(recv.begin_us, send.begin_us);  // a receive starts with its send
  EXPECT_NEAR(recv.end_us - base, 9, 1e-9);
  ASSERT_EQ(trace.memory.size(), 2u);
  EXPECT_EQ(trace.memory[0].activations, 1);
  EXPECT_EQ(trace.memory[0].bytes, 2000);
  EXPECT_EQ(trace.memory[1].activations, 0);
  EXPECT_EQ(trace.memory[1].bytes, 0);
  EXPECT_EQ(trace.memory[0].device_in_use, -1);  // a CPU stage's sample
  EXPECT_EQ(trace.memory[1].device_in_use, 4096);
  EXPECT_EQ(trace.memory[1].device_peak, 8192);
}

// A send that completes after its process moved on keeps the step it was sent in.
TEST(RecorderTest, SendRecordedInStepKeepsThatStep) {
  TraceRecorder recorder;
  ASSERT_TRUE(recorder.Configure(2, 2, 1).ok());
  const int64_t t0 = NowNanos();
  recorder.StepBegan(3, t0);
  recorder.StepEnded(3, t0 + 100);
  recorder.StepBegan(4, t0 + 200);
  recorder.send(0)->RecordInStep(3, ActionKind::kSendForward, 1, 1, 0, 64, t0 + 50, t0 + 250);
  recorder.send(0)->Record(ActionKind::kSendForward, 1, 1, 0, 64, t0 + 300, t0 + 400);
  const Trace trace = recorder.Collect();
  ASSERT_EQ(trace.spans.size(), 2u);
  EXPECT_EQ(trace.spans[0].step, 3);
  EXPECT_EQ(trace.spans[1].step, 4);
}

TEST(RecorderTest, SubStepsGoToTheirLanesWithLayerAndPart) {
  TraceRecorder recorder;
  ASSERT_TRUE(recorder.Configure(1, 1, 1).ok());
  const int64_t t0 = NowNanos();
  recorder.StepBegan(1, t0);
  recorder.compute(0)->RecordSubStep(ActionKind::kForward, 0, 0, 3, SubStepKind::kAttention,
                                     t0 + 1000, t0 + 2000);
  recorder.all_to_all(0)->RecordSubStep(ActionKind::kForward, 0, 0, 3, SubStepKind::kDispatch,
                                        t0 + 2000, t0 + 5000);
  recorder.compute(0)->RecordSubStep(ActionKind::kForward, 0, 0, 3, SubStepKind::kExperts,
                                     t0 + 6000, t0 + 7000);
  recorder.StepEnded(1, t0 + 8000);
  const Trace trace = recorder.Collect();
  ASSERT_EQ(trace.spans.size(), 3u);
  EXPECT_EQ(trace.spans[2].lane, Lane::kAllToAll);
  EXPECT_EQ(trace.spans[2].part, SubStepKind::kDispatch);
  EXPECT_EQ(trace.spans[2].layer, 3);
  EXPECT_EQ(trace.spans[1].part, SubStepKind::kExperts);
  // The experts waited 1 us after the dispatch, not 5 us from the step's begin.
  EXPECT_NEAR(trace.spans[1].wait_us, 1.0, 1e-6);
}

}  // namespace
}  // namespace stagehand::runtime::trace
