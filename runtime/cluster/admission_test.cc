// Tests of the cluster's admission rules: joins, checkpoint parts, orders and held-out
// answers, each refused for the reason it names. No actors, no threads.
#include "runtime/cluster/admission.h"

#include "gtest/gtest.h"

namespace stagehand::runtime {
namespace {

JoinRules Rules() { return JoinRules{"tok", 4, "--steps=3", 2}; }
JoinClaim Claim() { return JoinClaim{"tok", 1, 4, "--steps=3", 2}; }

TEST(RefuseJoin, AdmitsAMatchingClaim) { EXPECT_EQ(RefuseJoin(Claim(), Rules(), {0}, false), ""); }

TEST(RefuseJoin, NamesWhatDiffers) {
  JoinClaim c = Claim();
  c.token = "bad";
  EXPECT_EQ(RefuseJoin(c, Rules(), {}, false), "wrong join token");
  c = Claim();
  c.world_size = 3;
  EXPECT_EQ(RefuseJoin(c, Rules(), {}, false), "world size 3 != 4");
  c = Claim();
  c.rank = 4;
  EXPECT_EQ(RefuseJoin(c, Rules(), {}, false), "rank 4 out of range");
  EXPECT_EQ(RefuseJoin(Claim(), Rules(), {1}, false), "rank 1 already joined");
  c = Claim();
  c.config = "--steps=4";
  EXPECT_EQ(RefuseJoin(c, Rules(), {}, false),
            "configuration differs from rank 0's: '--steps=4' vs '--steps=3'");
  c = Claim();
  c.start_step = 0;
  EXPECT_EQ(RefuseJoin(c, Rules(), {}, false),
            "it resumes after step 0, rank 0 after step 2 (different checkpoints?)");
  EXPECT_EQ(RefuseJoin(Claim(), Rules(), {}, true), "the cluster is no longer admitting workers");
}

CheckpointPartClaim Part() {
  return CheckpointPartClaim{1,      4, "", {"stage_3.safetensors", "stage_2.safetensors"},
                             {3, 2}, 2, 2};
}

TEST(CheckCheckpointPart, AdmitsTheShardsOfTheRanksStagesInAnyOrder) {
  EXPECT_EQ(CheckCheckpointPart(1, 4, Part(), {2, 3}), "");
}

TEST(CheckCheckpointPart, RefusesWrongRankStagesNamesAndLengths) {
  EXPECT_EQ(CheckCheckpointPart(2, 4, Part(), {2, 3}), "answered as rank 1 for step 4");
  EXPECT_EQ(CheckCheckpointPart(1, 4, Part(), {4, 5}), "shards of stages it does not hold");
  CheckpointPartClaim p = Part();
  p.num_crc32 = 1;
  EXPECT_EQ(CheckCheckpointPart(1, 4, p, {2, 3}), "shard lists of different lengths");
  p = Part();
  p.files[0] = "../evil";
  EXPECT_EQ(CheckCheckpointPart(1, 4, p, {2, 3}), "unexpected shard file name '../evil'");
  p = Part();
  p.error = "disk full";
  EXPECT_EQ(CheckCheckpointPart(1, 4, p, {2, 3}), "disk full");
}

TEST(Orders, EvalAndCheckpointOrdersOutsideTheRunAreRefused) {
  EXPECT_EQ(RefuseEvalOrder(0, 16, 6, 16), "");
  EXPECT_EQ(
      RefuseEvalOrder(7, 16, 6, 16),
      "refused an evaluation order for step 7 over 16 batches (this rank runs steps 0..6 over 16)");
  EXPECT_NE(RefuseEvalOrder(2, 15, 6, 16), "");
  EXPECT_EQ(RefuseCheckpointOrder(2, "/c/.s2.tmp", 6, "/c", "/c/.s2.tmp"), "");
  EXPECT_NE(RefuseCheckpointOrder(2, "/etc", 6, "/c", "/c/.s2.tmp"), "");
  EXPECT_NE(RefuseCheckpointOrder(0, "/c/.s2.tmp", 6, "/c", "/c/.s2.tmp"), "");
  EXPECT_NE(RefuseCheckpointOrder(2, "/c/.s2.tmp", 6, "", "/c/.s2.tmp"), "");
}

TEST(HeldOutRound, CompletesWhenEveryRankAnsweredAndYieldsTheLastRanksLoss) {
  HeldOutRound round(3, 2);
  round.Begin(4);
  EXPECT_EQ(round.Admit(0, 4, false, 0, ""), "");
  EXPECT_EQ(round.Admit(2, 4, true, 1.5, ""), "");
  EXPECT_FALSE(round.complete());
  EXPECT_EQ(round.Missing(), (std::vector<int>{1}));
  EXPECT_EQ(round.Admit(1, 4, false, 0, ""), "");
  ASSERT_TRUE(round.complete());
  EXPECT_EQ(round.Finish(), 1.5);
  EXPECT_FALSE(round.running());
}

TEST(HeldOutRound, RefusesUnaskedDuplicateFailedAndMisplacedAnswers) {
  HeldOutRound round(2, 1);
  EXPECT_EQ(
      round.Admit(0, 0, false, 0, ""),
      "rank 0 sent a held-out result for step 0 that was not asked for (evaluation running: none)");
  round.Begin(2);
  EXPECT_NE(round.Admit(0, 3, false, 0, ""), "");
  EXPECT_EQ(round.Admit(0, 2, false, 0, ""), "");
  EXPECT_NE(round.Admit(0, 2, false, 0, ""), "");  // twice
  EXPECT_EQ(round.Admit(1, 2, false, 0, ""),
            "rank 1 sent a held-out result without a loss; only rank 1, which holds the last "
            "chunk, has one");
  EXPECT_EQ(round.Admit(1, 2, false, 0, "ucx: closed"),
            "held-out evaluation after step 2 failed on rank 1: ucx: closed");
}

}  // namespace
}  // namespace stagehand::runtime
