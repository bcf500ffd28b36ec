// Parity of the CUDA causal attention (cuBLASLt batched GEMMs + fused causal softmax, bf16) with
// the CPU float64 path: forward output and saved probabilities, input-gradient; outputs
// poisoned first. GPU only.
#ifdef STAGEHAND_CUDA
#include "ops/cuda/attention.h"

#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "ops/cpu/attention.h"
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

// T = 40 is not a multiple of the warp size; hs = 16.
constexpr int B = 2, T = 40, C = 64, NH = 4;
constexpr double kBf16Tolerance = 1e-2;

struct AttentionReference {
  std::vector<double> qkv = RoundedToBf16(RandomVector(B * T * 3 * C, 1, -2.0, 2.0));
  std::vector<double> out = std::vector<double>(B * T * C);
  std::vector<double> att = std::vector<double>(B * NH * T * T);
  AttentionReference() { ops::AttentionForward(out.data(), att.data(), qkv.data(), B, T, C, NH); }
};

TEST(AttentionCudaTest, ForwardOutputAndProbabilitiesMatchCpu) {
  SKIP_WITHOUT_GPU();
  AttentionReference x;
  auto matmul = Matmul::Create();
  ASSERT_THAT(matmul, IsOk());
  DeviceArray<bf16> qkv(B * T * 3 * C), out(B * T * C), att(B * NH * T * T);
  DeviceArray<char> scratch(static_cast<int64_t>(AttentionScratchBytes(B, T, C, NH)));
  qkv.Upload(x.qkv);
  ASSERT_THAT(AttentionForward(out.get(), att.get(), qkv.get(), scratch.get(), B, T, C, NH,
                               **matmul, nullptr),
              IsOk());
  ExpectParity("out", out.Download(), x.out, kBf16Tolerance);
  ExpectParity("att", att.Download(), x.att, kBf16Tolerance);
}

TEST(AttentionCudaTest, BackwardInputAccumulatesLikeCpu) {
  SKIP_WITHOUT_GPU();
  AttentionReference x;
  const std::vector<double> dout = RoundedToBf16(RandomVector(B * T * C, 2));
  const std::vector<double> dqkv_before = RoundedToBf16(RandomVector(B * T * 3 * C, 3));
  auto matmul = Matmul::Create();
  ASSERT_THAT(matmul, IsOk());
  DeviceArray<bf16> qkv(B * T * 3 * C), att(B * NH * T * T), dout_device(B * T * C),
      dqkv(B * T * 3 * C);
  DeviceArray<char> scratch(static_cast<int64_t>(AttentionScratchBytes(B, T, C, NH)));
  qkv.Upload(x.qkv);
  att.Upload(x.att);
  dout_device.Upload(dout);
  dqkv.Upload(dqkv_before);
  ASSERT_THAT(AttentionBackwardInput(dqkv.get(), dout_device.get(), qkv.get(), att.get(),
                                     scratch.get(), B, T, C, NH, **matmul, nullptr),
              IsOk());
  std::vector<double> expected = dqkv_before;
  ops::AttentionBackwardInput(expected.data(), dout.data(), x.qkv.data(), x.att.data(), B, T, C,
                              NH);
  ExpectParity("dqkv", dqkv.Download(), expected, kBf16Tolerance);
}

}  // namespace
}  // namespace stagehand::ops::cuda
#else
#include "gtest/gtest.h"
TEST(AttentionCudaTest, BuiltWithoutConfigCuda) { GTEST_SKIP() << "built without --config=cuda"; }
#endif  // STAGEHAND_CUDA
