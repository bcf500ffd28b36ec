// End-to-end tests of the rerun state machine in the actor runtime, with the test faults of
// STAGEHAND_FAULTS (runtime/train/stage_work.h): a transient bit flip is re-run and leaves
// the run bitwise equal to an unfaulted one; a persistent NaN batch stops the run with a
// report, or is skipped so that the run equals one whose data omits that batch. Also the
// step timers (--log_timers) against the trace summary of the same run, and a straggler.
// Not the state machine's unit test (runtime/train/rerun_test.cc).
#include <cstring>
#include <set>

#include "actors/model_pipeline.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/trace/recorder.h"
#include "runtime/trace/summary.h"
#include "runtime/train/timers.h"

namespace stagehand::actors {
namespace {

using ::testing::HasSubstr;

constexpr int kStages = 4, kM = 4, kB = 2, kT = 16;

const std::vector<int32_t>& Data() {
  static const std::vector<int32_t>* data = [] {
    std::string s;
    for (int i = 0; i < 100; ++i)
      s += "A rerun tells a flaky device from a bad batch. 0123456789\n";
    return new std::vector<int32_t>(s.begin(), s.end());
  }();
  return *data;
}

// The parameters and AdamW moments after a run, and each step's outcome.
struct TrainedRun {
  std::vector<runtime::NamedTensor> params;
  std::vector<runtime::OptimizerState> moments;
  std::map<int64_t, absl::StatusOr<StepOutcome>> steps;
};

// Runs `steps` (in order) on a 4-stage 1F1B pipeline of M = `m` with `faults` by stage; under
// `ramp` (a batch-size ramp-up to M = `m`), each step runs its own M; transfers over `link`.
TrainedRun Train(const std::vector<int64_t>& steps, std::map<int, runtime::StageFaults> faults,
                 runtime::RerunOptions rerun = {}, runtime::trace::TraceRecorder* trace = nullptr,
                 int m = kM, const runtime::MicrobatchCalculator* ramp = nullptr,
                 LinkModel link = {}, int dp = 1) {
  runtime::WindowSampler sampler(&Data(), kB, kT, 3);
  TrainedRun r;
  ModelPipelineOptions o;
  o.model = models::UniformGpt(4, 32, 2, 256, kT, 7);
  o.chunk = models::ChunkOptions{kB, kT, m};
  o.planner = *runtime::PlannerRegistry::Default().Get("1f1b");
  o.planner_options = runtime::PlannerOptions{kStages, m, 0};
  if (ramp != nullptr) {
    absl::StatusOr<runtime::StepSpecs> specs =
        runtime::StepSpecs::Create(*o.planner, o.planner_options, *ramp);
    EXPECT_TRUE(specs.ok()) << specs.status();
    if (!specs.ok()) return r;
    o.specs = std::make_shared<const runtime::StepSpecs>(*std::move(specs));
    sampler.SetFirstMicrobatches(ramp->FirstMicrobatches(steps.back(), kB));
  }
  o.optimizer.adamw.learning_rate = 1e-3;
  o.optimizer.adamw.weight_decay = 0.1;
  o.optimizer.states = &r.moments;
  o.rerun = rerun;
  o.faults = std::move(faults);
  o.trace = trace;
  o.link = link;
  o.dp = dp;
  absl::StatusOr<ModelPipeline> mp = BuildModelPipeline(o, &sampler);
  EXPECT_TRUE(mp.ok()) << mp.status();
  if (!mp.ok()) return r;
  for (int64_t step : steps) {
    r.steps.emplace(step, mp->pipeline->RunStep(step));
    if (!r.steps.at(step).ok()) break;
  }
  r.params = runtime::CollectParameters(mp->chunk_pointers());
  return r;
}

// Every parameter and moment bit for bit, by name.
void ExpectBitwiseEqual(const TrainedRun& a, const TrainedRun& b) {
  ASSERT_EQ(a.params.size(), b.params.size());
  for (size_t t = 0; t < a.params.size(); ++t) {
    EXPECT_EQ(a.params[t].name, b.params[t].name);
    ASSERT_EQ(a.params[t].data.size(), b.params[t].data.size());
    EXPECT_EQ(std::memcmp(a.params[t].data.data(), b.params[t].data.data(),
                          a.params[t].data.size() * sizeof(float)),
              0)
        << a.params[t].name;
  }
  ASSERT_EQ(a.moments.size(), b.moments.size());
  for (size_t k = 0; k < a.moments.size(); ++k) {
    EXPECT_EQ(a.moments[k].m, b.moments[k].m) << "chunk " << k;
    EXPECT_EQ(a.moments[k].v, b.moments[k].v) << "chunk " << k;
  }
}

TEST(RerunStepTest, TransientBitFlipIsRerunAndTheRunEqualsAnUnfaultedOneBitwise) {
  const TrainedRun clean = Train({1, 2, 3, 4}, {});
  runtime::StageFaults flip;
  flip.flip_at_step = 3;
  const TrainedRun faulted = Train({1, 2, 3, 4}, {{2, flip}});
  for (int64_t step = 1; step <= 4; ++step) {
    ASSERT_TRUE(faulted.steps.at(step).ok()) << faulted.steps.at(step).status();
    const StepOutcome& out = *faulted.steps.at(step);
    EXPECT_EQ(out.runs, step == 3 ? 2 : 1) << "step " << step;
    EXPECT_FALSE(out.skipped);
    EXPECT_EQ(out.loss, clean.steps.at(step)->loss);
  }
  const StepOutcome& step3 = *faulted.steps.at(3);
  ASSERT_EQ(step3.notes.size(), 2u);
  EXPECT_THAT(step3.notes[0], HasSubstr("first non-finite gradient"));
  EXPECT_THAT(step3.notes[0], HasSubstr("on stage 2"));
  EXPECT_THAT(step3.notes[1], HasSubstr("transient fault on rank 0 (stage 2)"));
  ExpectBitwiseEqual(faulted, clean);
}

TEST(RerunStepTest, PersistentNaNBatchStopsWithAReportAndNoUpdate) {
  runtime::StageFaults nan;
  nan.nan_at_step = 2;
  nan.nan_microbatch = 1;
  const TrainedRun faulted = Train({1, 2, 3}, {{0, nan}});
  ASSERT_EQ(faulted.steps.size(), 2u);  // step 3 never ran
  const absl::StatusOr<StepOutcome>& step2 = faulted.steps.at(2);
  ASSERT_FALSE(step2.ok());
  EXPECT_THAT(std::string(step2.status().message()),
              HasSubstr("persistent fault, the rerun reproduced it: step 2: non-finite loss in "
                        "microbatch 1 (stage 3); first non-finite gradient"));
  EXPECT_THAT(std::string(step2.status().message()), HasSubstr("did not apply step 2"));
  // Step 2 was never applied: the parameters are step 1's.
  ExpectBitwiseEqual(faulted, Train({1}, {}));
}

TEST(RerunStepTest, WithReplicasTheNaNHookPoisonsOneGlobalMicrobatch) {
  runtime::StageFaults nan;
  nan.nan_at_step = 2;
  nan.nan_microbatch = kM + 1;  // replica 1's microbatch 1
  const TrainedRun faulted = Train({1, 2}, {{0, nan}}, {}, nullptr, kM, nullptr, {}, /*dp=*/2);
  const absl::StatusOr<StepOutcome>& step2 = faulted.steps.at(2);
  ASSERT_FALSE(step2.ok());
  EXPECT_THAT(std::string(step2.status().message()),
              HasSubstr("step 2: non-finite loss in microbatch 5 (stage 3)"));
}

TEST(RerunStepTest, SkippedNaNBatchEqualsARunWhoseDataOmitsThatBatch) {
  runtime::StageFaults nan;
  nan.nan_at_step = 2;
  nan.nan_microbatch = 0;
  runtime::RerunOptions skip;
  skip.on_bad_step = runtime::OnBadStep::kSkip;
  const TrainedRun faulted = Train({1, 2, 3, 4}, {{0, nan}}, skip);
  ASSERT_TRUE(faulted.steps.at(2).ok()) << faulted.steps.at(2).status();
  EXPECT_TRUE(faulted.steps.at(2)->skipped);
  EXPECT_EQ(faulted.steps.at(2)->runs, 2);
  ASSERT_EQ(faulted.steps.at(2)->notes.size(), 2u);
  EXPECT_THAT(faulted.steps.at(2)->notes[1], HasSubstr("skipped the batch of step 2"));
  for (int64_t step : {3, 4}) EXPECT_FALSE(faulted.steps.at(step)->skipped);
  // Batch 2 omitted: steps 1, 3 and 4 (each with its own data and learning rate).
  ExpectBitwiseEqual(faulted, Train({1, 3, 4}, {}));
}

// The timers' figures of every step, per stage.
runtime::PhaseTimers Timers(const TrainedRun& run) {
  runtime::PhaseTimers timers(std::vector<int>(kStages, 0));
  for (const auto& [step, outcome] : run.steps) {
    EXPECT_TRUE(outcome.ok()) << outcome.status();
    if (!outcome.ok()) continue;
    EXPECT_EQ(outcome->phase_seconds.size(), size_t{kStages});
    for (size_t s = 0; s < outcome->phase_seconds.size(); ++s) {
      for (int p = 0; p < runtime::kNumTimerPhases; ++p) {
        timers.Add(static_cast<int>(s), static_cast<runtime::TimerPhase>(p),
                   outcome->phase_seconds[s][p]);
      }
    }
  }
  return timers;
}

// Every transfer takes 3 ms on the link, so that stages wait for inputs in flight: the
// transfers-exposed phase is far from zero and must agree too.
TEST(StepTimersTest, LogTimersFiguresAgreeWithTheTraceSummaryOfTheSameRunWithinFivePercent) {
  runtime::trace::TraceRecorder recorder("timers");
  const TrainedRun run =
      Train({1, 2, 3}, {}, {}, &recorder, kM, nullptr, LinkModel{/*latency_us=*/3000, 0});
  const runtime::PhaseSeconds timers = Timers(run).Totals();
  double forward = 0, backward_input = 0, backward_weight = 0, optimizer = 0, exposed = 0;
  for (const runtime::trace::StagePhaseTimes& t :
       runtime::trace::PhaseTimesOf(recorder.Collect())) {
    forward += t.forward_us / 1e6;
    backward_input += t.backward_input_us / 1e6;
    backward_weight += t.backward_weight_us / 1e6;
    exposed += t.transfers_exposed_us / 1e6;
    optimizer += t.optimizer_us / 1e6;
  }
  using runtime::TimerPhase;
  const std::pair<TimerPhase, double> from_trace[] = {
      {TimerPhase::kForward, forward},
      {TimerPhase::kBackwardInput, backward_input},
      {TimerPhase::kBackwardWeight, backward_weight},
      {TimerPhase::kTransfersExposed, exposed},
      {TimerPhase::kOptimizer, optimizer}};
  for (const auto& [phase, trace_seconds] : from_trace) {
    const double timer_seconds = timers[static_cast<int>(phase)];
    EXPECT_NEAR(timer_seconds, trace_seconds, 0.05 * trace_seconds)
        << runtime::TimerPhaseName(phase);
  }
  EXPECT_GT(forward, 0);
  EXPECT_GT(optimizer, 0);
  // 3 steps, 6 cross-stage transfers a microbatch (3 forward, 3 backward) of 3 ms each: the
  // first of each stage's inputs in a step at least is waited for in full.
  EXPECT_GT(exposed, 3 * 6 * 0.003 / 2) << "transfers exposed";
  // Data loading is part of forward; idle is what the lane did not run of the step.
  EXPECT_LE(timers[static_cast<int>(TimerPhase::kDataLoading)], forward);
  EXPECT_GT(timers[static_cast<int>(TimerPhase::kIdle)], 0);
}

TEST(StepTimersTest, ASlowStageIsNamedAsAStraggler) {
  runtime::StageFaults slow;
  slow.slow_forward_ms = 5;  // x 4 microbatches a step: far above the others' forward
  const std::vector<std::string> stragglers = Timers(Train({1, 2}, {{2, slow}})).Stragglers(1.5);
  ASSERT_FALSE(stragglers.empty());
  EXPECT_THAT(stragglers, ::testing::Contains(HasSubstr("straggler: stage 2 (rank 0) forward")));
}

// A batch-size ramp-up runs each step at its own M on one pipeline: 8 sequences (M = 4) from
// 4 (M = 2) over 8 samples gives steps 1 and 2 M = 2, then M = 4. Step 1 of the ramp-up trains
// bit for bit as a run of M = 2 does (its loss is the mean over 2 microbatches, and so is its
// gradient, although the chunks hold 4); the steps after it run on the same pipeline.
TEST(RampupTest, EachStepRunsItsOwnMicrobatchCount) {
  absl::StatusOr<runtime::MicrobatchCalculator> ramp =
      runtime::MicrobatchCalculator::Create(kM * kB, kB, 1, runtime::BatchRampup{4, 4, 8});
  ASSERT_TRUE(ramp.ok()) << ramp.status();
  ASSERT_EQ(ramp->MicrobatchesOfStep(1), 2);
  ASSERT_EQ(ramp->MicrobatchesOfStep(3), 4);
  const TrainedRun ramped = Train({1}, {}, {}, nullptr, kM, &*ramp);
  ExpectBitwiseEqual(ramped, Train({1}, {}, {}, nullptr, /*m=*/2));
  const TrainedRun three = Train({1, 2, 3}, {}, {}, nullptr, kM, &*ramp);
  for (int64_t step : {1, 2, 3}) ASSERT_TRUE(three.steps.at(step).ok()) << step;
  EXPECT_EQ(three.steps.at(1)->loss, ramped.steps.at(1)->loss);
}

}  // namespace
}  // namespace stagehand::actors
