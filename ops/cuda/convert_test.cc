// The conversions and the fp32 add on the GPU against the host's arithmetic, bit for bit
// (round to nearest even, exact widening, one float add), outputs poisoned first. GPU only.
#ifdef STAGEHAND_CUDA
#include "ops/cuda/convert.h"

#include <vector>

#include "gtest/gtest.h"
#include "ops/cpu/test_util.h"
#include "ops/cuda/gpu_test_util.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::ops::cuda {
namespace {

using ::stagehand::ops::testing::RandomVector;
using ::stagehand::testing::IsOk;
using testing::DeviceArray;
using testing::RoundedToBf16;
using testing::RoundedToFloat;

constexpr int64_t kN = 3 * 4096 + 17;  // not a multiple of the block size

TEST(ConvertCudaTest, FloatToBf16RoundsToNearestEvenAndBackIsExact) {
  SKIP_WITHOUT_GPU();
  const std::vector<double> values = RoundedToFloat(RandomVector(kN, 1, -40.0, 40.0));
  DeviceArray<float> in(kN), back(kN);
  DeviceArray<bf16> halves(kN);
  in.Upload(values);
  ASSERT_THAT(FloatToBf16(halves.get(), in.get(), kN, nullptr), IsOk());
  EXPECT_EQ(halves.Download(), RoundedToBf16(values));
  ASSERT_THAT(Bf16ToFloat(back.get(), halves.get(), kN, nullptr), IsOk());
  EXPECT_EQ(back.Download(), RoundedToBf16(values));
}

TEST(ConvertCudaTest, AddFloatIsTheHostsFloatAdd) {
  SKIP_WITHOUT_GPU();
  const std::vector<double> a = RoundedToFloat(RandomVector(kN, 2));
  const std::vector<double> b = RoundedToFloat(RandomVector(kN, 3, -1e-3, 1e-3));
  DeviceArray<float> out(kN), in(kN);
  out.Upload(a);
  in.Upload(b);
  ASSERT_THAT(AddFloat(out.get(), in.get(), kN, nullptr), IsOk());
  std::vector<double> expected(kN);
  for (int64_t i = 0; i < kN; ++i) {
    expected[i] = static_cast<float>(static_cast<float>(a[i]) + static_cast<float>(b[i]));
  }
  EXPECT_EQ(out.Download(), expected);
}

}  // namespace
}  // namespace stagehand::ops::cuda
#else
#include "gtest/gtest.h"
TEST(ConvertCudaTest, BuiltWithoutConfigCuda) { GTEST_SKIP() << "built without --config=cuda"; }
#endif  // STAGEHAND_CUDA
