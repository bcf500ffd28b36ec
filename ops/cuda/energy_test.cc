// EnergyMeter where NVML is missing (this build machine, CI): a clear FailedPrecondition, never a
// crash; with a GPU and its driver, a counter that never goes backwards.
#include "ops/cuda/energy.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::ops::cuda {
namespace {

using ::stagehand::testing::IsOk;
using ::stagehand::testing::StatusIs;
using ::testing::HasSubstr;

TEST(EnergyMeter, AMissingLibraryIsAFailedPreconditionNamingIt) {
  EXPECT_THAT(EnergyMeter::Open(0, "libnvidia-ml-that-does-not-exist.so.1"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("libnvidia-ml-that-does-not-exist.so.1")));
}

TEST(EnergyMeter, ALibraryWithoutNvmlIsRefused) {
  EXPECT_THAT(EnergyMeter::Open(0, "libm.so.6"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("lacks an NVML call")));
}

TEST(EnergyMeter, TheDriversCounterNeverGoesBackwards) {
  absl::StatusOr<std::unique_ptr<EnergyMeter>> meter = EnergyMeter::Open(0);
  if (!meter.ok()) GTEST_SKIP() << meter.status().message();
  absl::StatusOr<double> first = (*meter)->TotalJoules();
  absl::StatusOr<double> second = (*meter)->TotalJoules();
  ASSERT_THAT(first, IsOk());
  ASSERT_THAT(second, IsOk());
  EXPECT_GT(*first, 0.0);
  EXPECT_GE(*second, *first);
}

}  // namespace
}  // namespace stagehand::ops::cuda
