// Tests of the training loop's policy: the phase sequence of fresh, resumed and stopped
// runs, cadences, history and end-of-run lines. No model, no threads.
#include "runtime/train/train_loop.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace stagehand::runtime {
namespace {

// Drives `loop` to its end as a launcher would; each step's loss is step / 10. Returns the
// actions in order as text ("E0 S1 C1 ... F").
std::string Drive(TrainLoop& loop, int64_t stop_signal_at = -1) {
  std::string out;
  for (TrainAction a = loop.Start();;) {
    switch (a.phase) {
      case TrainPhase::kEvaluate:
        out += "E" + std::to_string(a.step) + " ";
        a = loop.Evaluated(a.step, 1.0 + a.step);
        break;
      case TrainPhase::kStep:
        out += "S" + std::to_string(a.step) + " ";
        a = loop.StepFinished(a.step, a.step / 10.0, a.step == stop_signal_at);
        break;
      case TrainPhase::kCheckpoint:
        out += "C" + std::to_string(a.step) + " ";
        a = loop.Checkpointed(a.step);
        break;
      case TrainPhase::kFinish:
        return out + "F";
    }
  }
}

TrainLoopOptions Options(int64_t steps) {
  TrainLoopOptions o;
  o.steps = steps;
  return o;
}

TEST(TrainLoop, FreshRunEvaluatesBeforeTrainingAndAfterTheLastStep) {
  TrainLoop loop(Options(3), 0, {});
  EXPECT_EQ(Drive(loop), "E0 S1 S2 S3 E3 F");
}

TEST(TrainLoop, EvaluationEveryNStepsComesBeforeThatStepsCheckpoint) {
  TrainLoopOptions o = Options(4);
  o.eval_every = 2;
  o.checkpoints = true;
  o.checkpoint_every = 2;
  TrainLoop loop(o, 0, {});
  EXPECT_EQ(Drive(loop), "E0 S1 S2 E2 C2 S3 S4 E4 C4 F");
}

TEST(TrainLoop, NoHeldOutBatchesMeansNoEvaluation) {
  TrainLoopOptions o = Options(2);
  o.evaluate = false;
  TrainLoop loop(o, 0, {});
  EXPECT_EQ(Drive(loop), "S1 S2 F");
  EXPECT_EQ(loop.EndLine(), "");
}

TEST(TrainLoop, ExitAfterStopsWithACheckpointAndSaysHowToContinue) {
  TrainLoopOptions o = Options(6);
  o.exit_after = 3;
  o.checkpoints = true;
  o.checkpoint_every = 2;
  TrainLoop loop(o, 0, {});
  EXPECT_EQ(loop.last_step(), 3);
  EXPECT_EQ(Drive(loop), "E0 S1 S2 C2 S3 C3 F");
  EXPECT_EQ(loop.stop_reason(), StopReason::kExitAfter);
  EXPECT_EQ(loop.EndLine(), "stopped after step 3 of 6 (--exit_after); continue with --resume");
}

TEST(TrainLoop, ResumedRunStartsAfterItsCheckpointAndIgnoresAnExitAfterBehindIt) {
  TrainLoopOptions o = Options(5);
  o.exit_after = 2;
  TrainLoop loop(o, 3, LossHistory{{0.1, 0.2, 0.3, 9.9}, {{0, 1.0}, {3, 4.0}, {4, 5.0}}});
  EXPECT_EQ(loop.first_step(), 4);
  EXPECT_EQ(loop.last_step(), 5);
  EXPECT_EQ(Drive(loop), "S4 S5 E5 F");
  // The history continues the checkpoint's: step 4's loss replaces what was stored past it.
  EXPECT_EQ(loop.history().train, (std::vector<double>{0.1, 0.2, 0.3, 0.4, 0.5}));
}

TEST(TrainLoop, ResumedAtTheLastStepOnlyFinishes) {
  TrainLoop loop(Options(3), 3, {});
  EXPECT_EQ(Drive(loop), "F");
}

TEST(TrainLoop, SignalStopsAfterTheCurrentStepWithACheckpoint) {
  TrainLoopOptions o = Options(10);
  o.checkpoints = true;
  TrainLoop loop(o, 0, {});
  EXPECT_EQ(Drive(loop, /*stop_signal_at=*/2), "E0 S1 S2 C2 F");
  EXPECT_EQ(loop.EndLine(), "stopped after step 2 of 10 (signal); continue with --resume");
}

TEST(TrainLoop, SignalAtTheLastStepIsAnOrdinaryEnd) {
  TrainLoop loop(Options(2), 0, {});
  EXPECT_EQ(Drive(loop, /*stop_signal_at=*/2), "E0 S1 S2 E2 F");
  EXPECT_EQ(loop.stop_reason(), StopReason::kNone);
}

TEST(TrainLoop, LogsEveryNthStepAndTheLastStepRun) {
  TrainLoopOptions o = Options(10);
  o.log_every = 4;
  o.exit_after = 7;
  TrainLoop loop(o, 0, {});
  std::vector<int64_t> logged;
  for (int64_t s = 1; s <= 10; ++s) {
    if (loop.LogDue(s)) logged.push_back(s);
  }
  EXPECT_EQ(logged, (std::vector<int64_t>{4, 7, 8, 10}));
}

TEST(TrainLoop, EndLineReportsTheFirstAndLastHeldOutLoss) {
  TrainLoop loop(Options(2), 0, {});
  Drive(loop);
  EXPECT_EQ(loop.EndLine(), "held-out loss after 2 steps 3.0000 (from 1.0000)");
  EXPECT_EQ(loop.history().validation,
            (std::vector<std::pair<int64_t, double>>{{0, 1.0}, {2, 3.0}}));
}

TEST(TrainLoop, CurveHoldsEveryLossByStep) {
  TrainLoop loop(Options(2), 0, {});
  Drive(loop);
  LossCurve curve = loop.Curve("t");
  EXPECT_EQ(curve.title, "t");
  EXPECT_EQ(curve.train, (std::vector<std::pair<int64_t, double>>{{1, 0.1}, {2, 0.2}}));
  EXPECT_EQ(curve.validation.size(), 2u);
}

TEST(LossHistory, RoundTripsThroughTheManifestJsonCutToTheStep) {
  LossHistory h{{0.5, 0.25, 0.125}, {{0, 2.0}, {2, 1.0}, {3, 0.5}}};
  nlohmann::json run = {{"history", LossHistoryToJson(h)}};
  LossHistory back = LossHistoryFromRunJson(run, 2);
  EXPECT_EQ(back.train, (std::vector<double>{0.5, 0.25}));
  EXPECT_EQ(back.validation, (std::vector<std::pair<int64_t, double>>{{0, 2.0}, {2, 1.0}}));
}

TEST(LossHistory, MalformedEntriesAreSkipped) {
  nlohmann::json run = {
      {"history", {{"train_loss", {1.0, "x", 2.0}}, {"validation_loss", {{0, 1.0}, {1}, "y"}}}}};
  LossHistory back = LossHistoryFromRunJson(run, 5);
  EXPECT_EQ(back.train, (std::vector<double>{1.0, 2.0}));
  EXPECT_EQ(back.validation.size(), 1u);
}

TEST(LossHistory, ASkippedStepsNaNLossKeepsItsPlaceThroughTheJson) {
  LossHistory h{{0.5, std::nan(""), 0.125}, {}};
  nlohmann::json run = {{"history", LossHistoryToJson(h)}};
  LossHistory back = LossHistoryFromRunJson(nlohmann::json::parse(run.dump()), 3);
  ASSERT_EQ(back.train.size(), 3u);
  EXPECT_TRUE(std::isnan(back.train[1]));
  EXPECT_EQ(back.train[2], 0.125);
}

TEST(HeldOutLine, NamesTheStepOrBeforeTraining) {
  EXPECT_EQ(HeldOutLine(0, 1.5), "held-out loss before training 1.5000");
  EXPECT_EQ(HeldOutLine(4, 1.25), "step 4 held-out loss 1.2500");
}

}  // namespace
}  // namespace stagehand::runtime
