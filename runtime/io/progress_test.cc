// Tests for the progress bar: durations, the bar, tokens/s and the ETA.
#include "runtime/io/progress.h"

#include "gtest/gtest.h"

namespace stagehand::runtime {
namespace {

TEST(ProgressTest, FormatsDurations) {
  EXPECT_EQ(FormatDuration(37.4), "37s");
  EXPECT_EQ(FormatDuration(245), "4m05s");
  EXPECT_EQ(FormatDuration(3720), "1h02m");
  EXPECT_EQ(FormatDuration(-3), "0s");
}

TEST(ProgressTest, LineShowsStepLossRateAndEta) {
  ProgressBar bar(0, 100, 2048, 10);
  for (int s = 1; s <= 25; ++s) bar.Update(s, 0.2, 3.5);
  EXPECT_DOUBLE_EQ(bar.tokens_per_second(), 10240);
  EXPECT_NEAR(bar.eta_seconds(), 15.0, 1e-9);
  EXPECT_EQ(bar.Line(), "[##........] 25/100 loss 3.5000 | 10.2k tok/s | ETA 15s");
}

TEST(ProgressTest, ResumedRunCountsFromItsFirstStep) {
  ProgressBar bar(90, 100, 100, 10);
  bar.Update(91, 1.0, 1.0);
  EXPECT_NEAR(bar.eta_seconds(), 9.0, 1e-9);
  EXPECT_EQ(bar.Line(), "[#########.] 91/100 loss 1.0000 | 100 tok/s | ETA 9s");
}

}  // namespace
}  // namespace stagehand::runtime
