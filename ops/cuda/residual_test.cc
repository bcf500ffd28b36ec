// Parity of the CUDA residual add (bf16) with the CPU float64 path: forward and input-gradient
// (separate and aliased gradients), outputs poisoned first. GPU only.
#ifdef STAGEHAND_CUDA
#include "ops/cuda/residual.h"

#include <vector>

#include "gtest/gtest.h"
#include "ops/cpu/residual.h"
#include "ops/cpu/test_util.h"
#include "ops/cuda/gpu_test_util.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::ops::cuda {
namespace {

using ::stagehand::ops::testing::RandomVector;
using ::stagehand::testing::IsOk;
using testing::DeviceArray;
using testing::ExpectParity;
using testing::RoundedToBf16;

constexpr int64_t kN = 5000;
constexpr double kBf16Tolerance = 1e-2;

TEST(ResidualCudaTest, ForwardMatchesCpu) {
  SKIP_WITHOUT_GPU();
  const std::vector<double> a = RoundedToBf16(RandomVector(kN, 1));
  const std::vector<double> b = RoundedToBf16(RandomVector(kN, 2));
  DeviceArray<bf16> a_device(kN), b_device(kN), out(kN);
  a_device.Upload(a);
  b_device.Upload(b);
  ASSERT_THAT(ResidualForward(out.get(), a_device.get(), b_device.get(), kN, nullptr), IsOk());
  std::vector<double> expected(kN);
  ops::ResidualForward(expected.data(), a.data(), b.data(), kN);
  ExpectParity("out", out.Download(), expected, kBf16Tolerance);
}

TEST(ResidualCudaTest, BackwardInputAccumulatesIntoBothLikeCpu) {
  SKIP_WITHOUT_GPU();
  const std::vector<double> dout = RoundedToBf16(RandomVector(kN, 3));
  const std::vector<double> da_before = RoundedToBf16(RandomVector(kN, 4));
  const std::vector<double> db_before = RoundedToBf16(RandomVector(kN, 5));
  DeviceArray<bf16> dout_device(kN), da(kN), db(kN);
  dout_device.Upload(dout);
  da.Upload(da_before);
  db.Upload(db_before);
  ASSERT_THAT(ResidualBackwardInput(da.get(), db.get(), dout_device.get(), kN, nullptr), IsOk());
  std::vector<double> expected_da = da_before, expected_db = db_before;
  ops::ResidualBackwardInput(expected_da.data(), expected_db.data(), dout.data(), kN);
  ExpectParity("da", da.Download(), expected_da, kBf16Tolerance);
  ExpectParity("db", db.Download(), expected_db, kBf16Tolerance);
}

TEST(ResidualCudaTest, AliasedGradientsAddTwiceLikeCpu) {
  SKIP_WITHOUT_GPU();
  const std::vector<double> dout = RoundedToBf16(RandomVector(kN, 6));
  const std::vector<double> before = RoundedToBf16(RandomVector(kN, 7));
  DeviceArray<bf16> dout_device(kN), d(kN);
  dout_device.Upload(dout);
  d.Upload(before);
  ASSERT_THAT(ResidualBackwardInput(d.get(), d.get(), dout_device.get(), kN, nullptr), IsOk());
  std::vector<double> expected = before;
  ops::ResidualBackwardInput(expected.data(), expected.data(), dout.data(), kN);
  ExpectParity("d", d.Download(), expected, kBf16Tolerance);
}

}  // namespace
}  // namespace stagehand::ops::cuda
#else
#include "gtest/gtest.h"
TEST(ResidualCudaTest, BuiltWithoutConfigCuda) { GTEST_SKIP() << "built without --config=cuda"; }
#endif  // STAGEHAND_CUDA
