// Parity of the CUDA token+position embedding with the CPU float64 path: forward (bf16) and
// weight-gradient (fp32, repeated tokens included), outputs poisoned first. GPU only.
#ifdef STAGEHAND_CUDA
#include "ops/cuda/encoder.h"

#include <vector>

#include "gtest/gtest.h"
#include "ops/cpu/encoder.h"
#include "ops/cpu/test_util.h"
#include "ops/cuda/gpu_test_util.h"
#include "ops/cuda/token_groups.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::ops::cuda {
namespace {

using ::stagehand::ops::testing::RandomTokens;
using ::stagehand::ops::testing::RandomVector;
using ::stagehand::testing::IsOk;
using testing::DeviceArray;
using testing::ExpectParity;
using testing::RoundedToBf16;
using testing::RoundedToFloat;

constexpr int B = 4, T = 24, C = 72, V = 30, kMaxT = 32;

TEST(EncoderCudaTest, ForwardMatchesCpu) {
  SKIP_WITHOUT_GPU();
  const std::vector<int32_t> tokens = RandomTokens(B * T, V, 1);
  const std::vector<double> wte = RoundedToBf16(RandomVector(V * C, 2));
  const std::vector<double> wpe = RoundedToBf16(RandomVector(kMaxT * C, 3));
  DeviceArray<int32_t> tokens_device(B * T);
  DeviceArray<bf16> wte_device(V * C), wpe_device(kMaxT * C), out(B * T * C);
  tokens_device.UploadRaw(tokens);
  wte_device.Upload(wte);
  wpe_device.Upload(wpe);
  ASSERT_THAT(EncoderForward(out.get(), tokens_device.get(), wte_device.get(), wpe_device.get(), B,
                             T, C, nullptr),
              IsOk());
  std::vector<double> expected(B * T * C);
  ops::EncoderForward(expected.data(), tokens.data(), wte.data(), wpe.data(), B, T, C);
  ExpectParity("out", out.Download(), expected, 1e-2);
}

TEST(EncoderCudaTest, BackwardWeightsAccumulateLikeCpu) {
  SKIP_WITHOUT_GPU();
  // 96 positions over 30 ids: every id repeats, so accumulation into one row is exercised.
  const std::vector<int32_t> tokens = RandomTokens(B * T, V, 4);
  const std::vector<double> dout = RoundedToBf16(RandomVector(B * T * C, 5));
  const std::vector<double> dwte_before = RoundedToFloat(RandomVector(V * C, 6));
  const std::vector<double> dwpe_before = RoundedToFloat(RandomVector(kMaxT * C, 7));
  DeviceArray<int32_t> tokens_device(B * T);
  DeviceArray<bf16> dout_device(B * T * C);
  DeviceArray<float> dwte(V * C), dwpe(kMaxT * C);
  tokens_device.UploadRaw(tokens);
  dout_device.Upload(dout);
  dwte.Upload(dwte_before);
  dwpe.Upload(dwpe_before);
  ASSERT_THAT(EncoderBackwardWeights(dwte.get(), dwpe.get(), dout_device.get(), tokens_device.get(),
                                     B, T, C, nullptr),
              IsOk());
  std::vector<double> expected_dwte = dwte_before, expected_dwpe = dwpe_before;
  ops::EncoderBackwardWeights(expected_dwte.data(), expected_dwpe.data(), dout.data(),
                              tokens.data(), B, T, C);
  ExpectParity("dwte", dwte.Download(), expected_dwte, 1e-4);
  ExpectParity("dwpe", dwpe.Download(), expected_dwpe, 1e-4);
}

// The grouped W (one thread per token and channel) against the one-thread-per-channel W: the
// same additions in the same order, so the same bits.
TEST(EncoderCudaTest, GroupedBackwardWeightsAreBitwiseThePerChannelKernel) {
  SKIP_WITHOUT_GPU();
  const std::vector<int32_t> tokens = RandomTokens(B * T, V, 8);
  const std::vector<double> dout = RoundedToBf16(RandomVector(B * T * C, 9));
  const std::vector<double> dwte_before = RoundedToFloat(RandomVector(V * C, 10));
  const std::vector<double> dwpe_before = RoundedToFloat(RandomVector(kMaxT * C, 11));
  const TokenGroups groups = GroupPositionsByToken(tokens.data(), tokens.size(), V);
  DeviceArray<int32_t> tokens_device(B * T), order(B * T), starts(groups.groups() + 1),
      ids(groups.groups());
  DeviceArray<bf16> dout_device(B * T * C);
  DeviceArray<float> dwte(V * C), dwpe(kMaxT * C), dwte_grouped(V * C), dwpe_grouped(kMaxT * C);
  tokens_device.UploadRaw(tokens);
  order.UploadRaw(groups.order);
  starts.UploadRaw(groups.starts);
  ids.UploadRaw(groups.ids);
  dout_device.Upload(dout);
  dwte.Upload(dwte_before);
  dwpe.Upload(dwpe_before);
  dwte_grouped.Upload(dwte_before);
  dwpe_grouped.Upload(dwpe_before);
  ASSERT_THAT(EncoderBackwardWeights(dwte.get(), dwpe.get(), dout_device.get(), tokens_device.get(),
                                     B, T, C, nullptr),
              IsOk());
  ASSERT_THAT(EncoderBackwardWeightsGrouped(dwte_grouped.get(), dwpe_grouped.get(),
                                            dout_device.get(), order.get(), starts.get(), ids.get(),
                                            groups.groups(), B, T, C, nullptr),
              IsOk());
  EXPECT_EQ(dwte_grouped.Download(), dwte.Download());
  EXPECT_EQ(dwpe_grouped.Download(), dwpe.Download());
}

}  // namespace
}  // namespace stagehand::ops::cuda
#else
#include "gtest/gtest.h"
TEST(EncoderCudaTest, BuiltWithoutConfigCuda) { GTEST_SKIP() << "built without --config=cuda"; }
#endif  // STAGEHAND_CUDA
