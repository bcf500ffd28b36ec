// Tests of the actor runtime's behaviour on synthetic work: stalls are reported with what
// each stage waits for, the memory cap is enforced, and compute runs while its transfers are
// in flight (overlap emerges).
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "actors/lane.h"
#include "actors/model_pipeline.h"
#include "actors/testing/deterministic_pipeline.h"
#include "actors/testing/later_completion_work.h"
#include "gtest/gtest.h"
#include "runtime/planners/one_f_one_b.h"
#include "runtime/trace/chrome_json.h"
#include "runtime/trace/summary.h"

namespace stagehand::actors {
namespace {

// A threaded lane runs its jobs' OpenMP regions with the team size it was given (the launch
// splits the cores between compute lanes); an inline lane leaves the caller's setting alone.
TEST(LaneTest, AThreadedLaneFixesItsOpenMpTeamSizeAndAnInlineLaneLeavesTheCaller) {
  const int caller = omp_get_max_threads();
  for (int threads : {1, 3}) {
    int seen = 0, team = 0;
    {
      Lane lane(Lane::Mode::kThread, threads);
      lane.Post([&] {
        seen = omp_get_max_threads();
#pragma omp parallel
        {
#pragma omp single
          team = omp_get_num_threads();
        }
      });
    }  // drains, then joins
    EXPECT_EQ(seen, threads);
    EXPECT_EQ(team, threads);
  }
  int seen = 0;
  {
    Lane lane(Lane::Mode::kInline, 1);
    lane.Post([&] { seen = omp_get_max_threads(); });
  }
  EXPECT_EQ(seen, caller);
  EXPECT_EQ(omp_get_max_threads(), caller);
}

// Tickets posted out of order run in ticket order, on a thread and inline alike; a plain Post
// goes behind what is runnable, never ahead of a ticket's turn.
TEST(LaneTest, TicketsRunInTicketOrderWhateverOrderTheyArePostedIn) {
  for (Lane::Mode mode : {Lane::Mode::kThread, Lane::Mode::kInline}) {
    std::vector<int> ran;
    std::mutex mu;
    auto job = [&](int id) {
      return [&, id] {
        std::lock_guard<std::mutex> lock(mu);
        ran.push_back(id);
      };
    };
    {
      Lane lane(mode);
      lane.PostInOrder(2, job(2));
      lane.PostInOrder(1, job(1));
      EXPECT_TRUE(ran.empty() || mode == Lane::Mode::kThread);  // both wait for ticket 0
      lane.PostInOrder(0, job(0));
      lane.PostInOrder(4, job(4));
      lane.Post(job(100));  // runnable now: behind 0-2, not waiting for 3
      lane.PostInOrder(3, job(3));
    }  // drains, then joins
    EXPECT_EQ(ran, (std::vector<int>{0, 1, 2, 100, 3, 4})) << (mode == Lane::Mode::kThread);
  }
}

using runtime::Action;
using runtime::ActionKind;

// A planner whose stage 1 never picks anything: the step can only stall.
class StuckDefinition : public runtime::OneFOneBDefinition {
 public:
  class Never : public runtime::Planner {
   public:
    std::optional<Action> Next(const std::vector<Action>&, const runtime::StageState&) override {
      return std::nullopt;
    }
  };
  std::string name() const override { return "stuck"; }
  std::unique_ptr<runtime::Planner> MakePlanner(const runtime::StepSpec& spec,
                                                int stage) const override {
    if (stage == 1) return std::make_unique<Never>();
    return OneFOneBDefinition::MakePlanner(spec, stage);
  }
};

// 1F1B's plan, but its spec caps activations below what stage 0 needs.
class OverCapDefinition : public runtime::OneFOneBDefinition {
 public:
  absl::StatusOr<runtime::StepSpec> MakeSpec(const runtime::PlannerOptions& o) const override {
    runtime::PlannerOptions uncapped = o;
    uncapped.max_inflight = 0;
    absl::StatusOr<runtime::StepSpec> spec = OneFOneBDefinition::MakeSpec(uncapped);
    if (spec.ok()) spec->max_inflight = o.max_inflight;
    return spec;
  }
};

TEST(PipelineTest, StallIsReportedWithWhatEachStageWaitsFor) {
  StuckDefinition stuck;
  auto pipeline = BuildSyntheticPipeline(&stuck, {3, 4, 0}, {}, {}, false);
  ASSERT_TRUE(pipeline.ok()) << pipeline.status();
  auto outcome = (*pipeline)->RunStep(1);
  ASSERT_FALSE(outcome.ok());
  const std::string message(outcome.status().message());
  std::printf("%s\n", message.c_str());
  EXPECT_NE(message.find("stalled"), std::string::npos) << message;
  EXPECT_NE(message.find("s1"), std::string::npos) << message;
  EXPECT_NE(message.find("s2 F c2 mb0 waits for activation from s1"), std::string::npos) << message;
  // A broken pipeline refuses further steps instead of hanging.
  EXPECT_EQ((*pipeline)->RunStep(2).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(PipelineTest, MemoryCapIsReportedNotExceeded) {
  OverCapDefinition over_cap;
  auto pipeline = BuildSyntheticPipeline(&over_cap, {4, 8, 2}, {}, {}, false);
  ASSERT_TRUE(pipeline.ok()) << pipeline.status();
  auto outcome = (*pipeline)->RunStep(1);
  ASSERT_FALSE(outcome.ok());
  const std::string message(outcome.status().message());
  EXPECT_NE(message.find("stage 0"), std::string::npos) << message;
  EXPECT_NE(message.find("max_inflight"), std::string::npos) << message;
}

// Overlap emerges because compute never waits for a send: under CAF's test coordinator the
// link's deliveries are timeouts that fire only when the test says so. With every transfer
// held on the link, stage 0 still runs all M GPipe forwards (each hands its activation to
// the transfer lane and goes on) while no later stage has started anything; once the
// deliveries fire the step completes. Ordering, not wall-clock time.
TEST(PipelineTest, ComputeRunsWhileItsTransfersAreInFlight) {
  const int P = 4, M = 8;
  auto def = runtime::PlannerRegistry::Default().Get("gpipe");
  ASSERT_TRUE(def.ok());
  runtime::SyntheticDurations d;
  d.payload_floats = 1024;
  auto pipeline = BuildSyntheticPipeline(*def, {P, M, 0}, d, LinkModel{2000.0, 0.0},
                                         /*deterministic=*/true);
  ASSERT_TRUE(pipeline.ok()) << pipeline.status();
  Pipeline& p = **pipeline;
  testing::OpenedPipeline opened = testing::Open(p);
  caf::scheduler::test_coordinator& sched = *opened.coordinator;
  auto& stages = opened.stages;
  for (const auto* stage : stages) ASSERT_NE(stage, nullptr);
  caf::scoped_actor self{p.system()};
  self->send(p.driver(), step_atom::value, int64_t{1});
  sched.run();  // everything but the link's deliveries
  auto started = [&](int s, ActionKind kind, int mb) {
    return stages[s]->state.loop &&
           stages[s]->state.loop->state().HasStarted(Action{s, kind, s, mb});
  };
  for (int mb = 0; mb < M; ++mb) {
    EXPECT_TRUE(started(0, ActionKind::kForward, mb))
        << "stage 0 waited for a send before F mb" << mb;
  }
  for (int s = 1; s < P; ++s) {
    EXPECT_FALSE(started(s, ActionKind::kForward, 0))
        << "stage " << s << " ran before its input arrived";
  }
  int deliveries = 0;
  while (sched.trigger_timeouts() > 0 || sched.has_job()) {
    sched.run();
    ASSERT_LT(++deliveries, 10000) << "the step does not converge";
  }
  self->receive(
      [&](StepOutcome& out) { EXPECT_TRUE(out.error.empty()) << out.error; },
      caf::after(std::chrono::seconds(5)) >> [&] { ADD_FAILURE() << "no reply from the driver"; });
}

// --dp=2: each stage's buckets are summed on its communication lane as REDUCE_GRAD spans
// (one per bucket and step), which survive the Chrome JSON round trip and give the summary
// its gradient-reduction row. A replica failing aborts the others' collectives instead of
// leaving them waiting.
// A work whose actions complete after the call (testing/later_completion_work.h, 3 ms of
// made-up device time each): the trace's spans are the completions' device times, not the
// calls' (which take well under a millisecond here), the step still trains, and with the next
// action queued the lane's gaps between ready actions stay far below the action.
// Text for the pipelines of works that complete later.
const std::vector<int32_t>& LaterText() {
  static const std::vector<int32_t>* tokens = [] {
    std::string text;
    for (int i = 0; i < 40; ++i) text += "a gpu stream completes its work later. ";
    return new std::vector<int32_t>(text.begin(), text.end());
  }();
  return *tokens;
}

// A tiny model on `planner`, P=2, M=4, with the next action queued (lane depth 2); the stage
// works are the caller's (ModelPipelineOptions::stage_work).
ModelPipelineOptions LaterPipelineOptions(const runtime::PlannerDefinition* planner) {
  ModelPipelineOptions o;
  o.model = models::UniformGpt(2, 16, 2, 256, 8, 11);
  o.chunk = models::ChunkOptions{2, 8, 4};
  o.planner = planner;
  o.planner_options = {2, 4, 0};
  o.lane_depth = 2;
  return o;
}

TEST(PipelineTest, ActionsCompletingLaterAreTracedWithTheirDeviceTimes) {
  runtime::WindowSampler sampler(&LaterText(), 2, 8, 5);
  auto def = runtime::PlannerRegistry::Default().Get("1f1b");
  ASSERT_TRUE(def.ok());
  runtime::trace::TraceRecorder recorder("later");
  ModelPipelineOptions o = LaterPipelineOptions(*def);
  o.trace = &recorder;
  std::vector<stagehand::testing::LaterCompletionWork*> works;
  o.stage_work = [&works](const ModelPipelineOptions::StageWorkSpec& w)
      -> absl::StatusOr<std::unique_ptr<runtime::StageWork>> {
    auto work = std::make_unique<stagehand::testing::LaterCompletionWork>(
        std::make_unique<runtime::ModelStageWork>(w.held, w.num_chunks, w.sampler,
                                                  w.num_microbatches, w.optimizer),
        std::chrono::milliseconds(3));
    works.push_back(work.get());
    return std::unique_ptr<runtime::StageWork>(std::move(work));
  };
  auto mp = BuildModelPipeline(o, &sampler);
  ASSERT_TRUE(mp.ok()) << mp.status();
  for (int64_t step = 1; step <= 2; ++step) {
    auto outcome = mp->pipeline->RunStep(step);
    ASSERT_TRUE(outcome.ok()) << outcome.status();
    EXPECT_TRUE(std::isfinite(outcome->loss));
  }
  int completed = 0;
  for (stagehand::testing::LaterCompletionWork* work : works) completed += work->completed();
  EXPECT_EQ(completed, 2 * 2 * 4 * 2);  // steps x stages x microbatches x (F, B)
  const runtime::trace::Trace trace = recorder.Collect();
  int compute = 0;
  for (const runtime::trace::Span& s : trace.spans) {
    if (s.lane != runtime::trace::Lane::kCompute || !runtime::IsCompute(s.kind)) continue;
    ++compute;
    EXPECT_GE(s.duration_us(), 2900) << runtime::to_string(s.kind) << " mb" << s.microbatch;
  }
  EXPECT_EQ(compute, completed);
  auto summary = runtime::trace::Summarize(trace);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_GT(summary->lane_gaps, 0);
  EXPECT_LT(summary->lane_gap_median_us, 1000);
}

// A work with a device (as a GPU stage's): the trace's memory counter carries its device
// memory, as the work reported it when each action finished, and the Chrome file keeps it.
class DeviceMemoryWork : public stagehand::testing::LaterCompletionWork {
 public:
  using LaterCompletionWork::LaterCompletionWork;
  bool DeviceMemory(int64_t* in_use, int64_t* peak) const override {
    *in_use = (1 << 20) * (stage_ + 1);
    *peak = (2 << 20) * (stage_ + 1);
    return true;
  }
  int stage_ = 0;
};

TEST(PipelineTest, AWorksDeviceMemoryGoesToTheTracesCounter) {
  runtime::WindowSampler sampler(&LaterText(), 2, 8, 5);
  auto def = runtime::PlannerRegistry::Default().Get("1f1b");
  ASSERT_TRUE(def.ok());
  runtime::trace::TraceRecorder recorder("device memory");
  ModelPipelineOptions o = LaterPipelineOptions(*def);
  o.trace = &recorder;
  o.stage_work = [](const ModelPipelineOptions::StageWorkSpec& w)
      -> absl::StatusOr<std::unique_ptr<runtime::StageWork>> {
    auto work = std::make_unique<DeviceMemoryWork>(
        std::make_unique<runtime::ModelStageWork>(w.held, w.num_chunks, w.sampler,
                                                  w.num_microbatches, w.optimizer),
        std::chrono::milliseconds(1));
    work->stage_ = w.stage;
    return std::unique_ptr<runtime::StageWork>(std::move(work));
  };
  auto mp = BuildModelPipeline(o, &sampler);
  ASSERT_TRUE(mp.ok()) << mp.status();
  ASSERT_TRUE(mp->pipeline->RunStep(1).ok());
  const runtime::trace::Trace trace = recorder.Collect();
  ASSERT_FALSE(trace.memory.empty());
  for (const runtime::trace::MemorySample& m : trace.memory) {
    EXPECT_EQ(m.device_in_use, (1 << 20) * (m.stage + 1)) << "stage " << m.stage;
    EXPECT_EQ(m.device_peak, (2 << 20) * (m.stage + 1)) << "stage " << m.stage;
  }
  absl::StatusOr<runtime::trace::Trace> back =
      runtime::trace::FromChromeJson(runtime::trace::ToChromeJson(trace));
  ASSERT_TRUE(back.ok()) << back.status();
  for (const runtime::trace::MemorySample& m : back->memory) {
    EXPECT_EQ(m.device_peak, (2 << 20) * (m.stage + 1));
  }
}

// A work completing later whose F of chunk 1, microbatch 2 fails at once: the step fails while
// stage 0's completions (40 ms each) are still queued, and destroying the pipeline then runs
// them while its actor system is alive (they send to actors), rather than after it is gone.
class FailingLaterWork : public stagehand::testing::LaterCompletionWork {
 public:
  using LaterCompletionWork::LaterCompletionWork;
  absl::Status Forward(int chunk, int mb, const runtime::Payload* input, runtime::Payload* output,
                       double* loss) override {
    if (chunk == 1 && mb == 2) return absl::InternalError("the device broke");
    return LaterCompletionWork::Forward(chunk, mb, input, output, loss);
  }
};

TEST(PipelineTest, AFailedStepWithCompletionsStillQueuedShutsDownCleanly) {
  runtime::WindowSampler sampler(&LaterText(), 2, 8, 5);
  auto def = runtime::PlannerRegistry::Default().Get("gpipe");
  ASSERT_TRUE(def.ok());
  ModelPipelineOptions o = LaterPipelineOptions(*def);
  o.stage_work = [](const ModelPipelineOptions::StageWorkSpec& w)
      -> absl::StatusOr<std::unique_ptr<runtime::StageWork>> {
    return std::unique_ptr<runtime::StageWork>(std::make_unique<FailingLaterWork>(
        std::make_unique<runtime::ModelStageWork>(w.held, w.num_chunks, w.sampler,
                                                  w.num_microbatches, w.optimizer),
        std::chrono::milliseconds(40)));
  };
  auto mp = BuildModelPipeline(o, &sampler);
  ASSERT_TRUE(mp.ok()) << mp.status();
  auto outcome = mp->pipeline->RunStep(1);
  ASSERT_FALSE(outcome.ok());
  EXPECT_NE(outcome.status().message().find("the device broke"), std::string::npos)
      << outcome.status();
  mp->pipeline.reset();  // with stage 0's completions still queued
}

TEST(PipelineTest, DataParallelStepsTraceReduceGradOnTheCommunicationLane) {
  std::string text;
  for (int i = 0; i < 40; ++i) text += "data parallel replicas sum their gradients. ";
  const std::vector<int32_t> tokens(text.begin(), text.end());
  runtime::WindowSampler sampler(&tokens, 2, 8, 5);
  auto def = runtime::PlannerRegistry::Default().Get("1f1b");
  ASSERT_TRUE(def.ok());
  runtime::trace::TraceRecorder recorder("dp test");
  ModelPipelineOptions o;
  o.model = models::UniformGpt(4, 16, 2, 256, 8, 11);
  o.chunk = models::ChunkOptions{2, 8, 4};
  o.planner = *def;
  o.planner_options = {2, 4, 0};
  o.dp = 2;
  o.grad_bucket_mb = 0.01;  // 2621 floats: several buckets per chunk
  o.trace = &recorder;
  auto mp = BuildModelPipeline(o, &sampler);
  ASSERT_TRUE(mp.ok()) << mp.status();
  int64_t floats = 0;  // every element of every chunk's gradient, reduced once a step
  for (const auto& chunk : mp->chunks) floats += chunk->params().size();
  for (int64_t step = 1; step <= 2; ++step) {
    auto outcome = mp->pipeline->RunStep(step);
    ASSERT_TRUE(outcome.ok()) << outcome.status();
  }
  const runtime::trace::Trace trace = recorder.Collect();
  // Per-layer buckets (the default) are cut at layer boundaries and at most ~2621 floats:
  // several per chunk, together each element once per step (replica 0's trace). The one
  // exception is the first chunk's final tail (its embedding and first layer's last part, final
  // only at the step's last moment), one bucket whatever the cap.
  int reduce_spans = 0, above_cap = 0;
  int64_t reduced_bytes = 0;
  for (const runtime::trace::Span& s : trace.spans) {
    if (s.kind != ActionKind::kReduceGrad) continue;
    ++reduce_spans;
    reduced_bytes += s.bytes;
    EXPECT_EQ(s.lane, runtime::trace::Lane::kSend);
    EXPECT_GT(s.bytes, 0);
    if (s.bytes > 4 * 2621 * 3 / 2) {
      ++above_cap;
      EXPECT_EQ(s.chunk, 0) << s.bytes;
    }
  }
  EXPECT_EQ(above_cap, 2);  // the tail of chunk 0 (> 4224 floats of embedding), once a step
  EXPECT_EQ(reduced_bytes, 2 * 4 * floats);
  EXPECT_GT(reduce_spans, 2 * static_cast<int>(mp->chunks.size()));
  auto read = runtime::trace::FromChromeJson(runtime::trace::ToChromeJson(trace));
  ASSERT_TRUE(read.ok()) << read.status();
  auto summary = runtime::trace::Summarize(*read);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_GT(summary->grad_reduction_us, 0);
  EXPECT_LE(summary->hidden_grad_reduction_us, summary->grad_reduction_us);
  EXPECT_NE(runtime::trace::FormatSummary(*summary).find("gradient reduction"), std::string::npos);
}

}  // namespace
}  // namespace stagehand::actors
