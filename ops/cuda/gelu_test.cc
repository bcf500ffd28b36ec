// Parity of the CUDA GELU (bf16) with the CPU float64 path: forward and input-gradient,
// outputs poisoned first. GPU only.
#ifdef STAGEHAND_CUDA
#include "ops/cuda/gelu.h"

#include <vector>

#include "gtest/gtest.h"
#include "ops/cpu/gelu.h"
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

constexpr int64_t kN = 3 * 4096 + 17;  // not a multiple of the block size
constexpr double kBf16Tolerance = 1e-2;

TEST(GeluCudaTest, ForwardMatchesCpu) {
  SKIP_WITHOUT_GPU();
  const std::vector<double> inp = RoundedToBf16(RandomVector(kN, 1, -4.0, 4.0));
  DeviceArray<bf16> inp_device(kN), out(kN);
  inp_device.Upload(inp);
  ASSERT_THAT(GeluForward(out.get(), inp_device.get(), kN, nullptr), IsOk());
  std::vector<double> expected(kN);
  ops::GeluForward(expected.data(), inp.data(), kN);
  ExpectParity("out", out.Download(), expected, kBf16Tolerance);
}

TEST(GeluCudaTest, BackwardInputAccumulatesLikeCpu) {
  SKIP_WITHOUT_GPU();
  const std::vector<double> inp = RoundedToBf16(RandomVector(kN, 2, -4.0, 4.0));
  const std::vector<double> dout = RoundedToBf16(RandomVector(kN, 3));
  const std::vector<double> dinp_before = RoundedToBf16(RandomVector(kN, 4));
  DeviceArray<bf16> inp_device(kN), dout_device(kN), dinp(kN);
  inp_device.Upload(inp);
  dout_device.Upload(dout);
  dinp.Upload(dinp_before);
  ASSERT_THAT(GeluBackwardInput(dinp.get(), inp_device.get(), dout_device.get(), kN, nullptr),
              IsOk());
  std::vector<double> expected = dinp_before;
  ops::GeluBackwardInput(expected.data(), inp.data(), dout.data(), kN);
  ExpectParity("dinp", dinp.Download(), expected, kBf16Tolerance);
}

}  // namespace
}  // namespace stagehand::ops::cuda
#else
#include "gtest/gtest.h"
TEST(GeluCudaTest, BuiltWithoutConfigCuda) { GTEST_SKIP() << "built without --config=cuda"; }
#endif  // STAGEHAND_CUDA
