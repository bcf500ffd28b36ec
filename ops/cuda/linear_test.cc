// Parity of the CUDA linear layer (cuBLASLt, bf16) with the CPU float64 path: forward with the
// bias epilogue, input-gradient and weight-gradient, outputs poisoned first. GPU only.
#ifdef STAGEHAND_CUDA
#include "ops/cuda/linear.h"

#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "ops/cpu/linear.h"
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

constexpr int N = 96, C = 64, OC = 80;
constexpr double kBf16Tolerance = 1e-2;

struct LinearInputs {
  std::vector<double> inp = RoundedToBf16(RandomVector(N * C, 1));
  std::vector<double> weight = RoundedToBf16(RandomVector(OC * C, 2, -0.3, 0.3));
  std::vector<double> bias = RoundedToBf16(RandomVector(OC, 3));
  std::vector<double> dout = RoundedToBf16(RandomVector(N * OC, 4));
};

TEST(LinearCudaTest, ForwardWithBiasMatchesCpu) {
  SKIP_WITHOUT_GPU();
  LinearInputs x;
  DeviceArray<bf16> inp(N * C), weight(OC * C), bias(OC), out(N * OC);
  inp.Upload(x.inp);
  weight.Upload(x.weight);
  bias.Upload(x.bias);
  auto matmul = Matmul::Create();
  ASSERT_THAT(matmul, IsOk());
  ASSERT_THAT(
      LinearForward(out.get(), inp.get(), weight.get(), bias.get(), N, C, OC, **matmul, nullptr),
      IsOk());
  std::vector<double> expected(N * OC);
  ops::LinearForward(expected.data(), x.inp.data(), x.weight.data(), x.bias.data(), N, C, OC);
  ExpectParity("out", out.Download(), expected, kBf16Tolerance);
}

// The heuristic's algorithm is kept per problem: the same problem again reuses it and gives the
// same bits; another shape asks the heuristic again.
TEST(LinearCudaTest, TheAlgorithmIsKeptPerProblemAndGivesTheSameBits) {
  SKIP_WITHOUT_GPU();
  LinearInputs x;
  DeviceArray<bf16> inp(N * C), weight(OC * C), bias(OC), first(N * OC), again(N * OC);
  inp.Upload(x.inp);
  weight.Upload(x.weight);
  bias.Upload(x.bias);
  auto matmul = Matmul::Create();
  ASSERT_THAT(matmul, IsOk());
  EXPECT_EQ((*matmul)->cached_algorithms(), 0);
  ASSERT_THAT(
      LinearForward(first.get(), inp.get(), weight.get(), bias.get(), N, C, OC, **matmul, nullptr),
      IsOk());
  EXPECT_EQ((*matmul)->cached_algorithms(), 1);
  ASSERT_THAT(
      LinearForward(again.get(), inp.get(), weight.get(), bias.get(), N, C, OC, **matmul, nullptr),
      IsOk());
  EXPECT_EQ((*matmul)->cached_algorithms(), 1);
  EXPECT_EQ(first.Download(), again.Download());
  ASSERT_THAT(LinearForward(again.get(), inp.get(), weight.get(), bias.get(), N / 2, C, OC,
                            **matmul, nullptr),
              IsOk());
  EXPECT_EQ((*matmul)->cached_algorithms(), 2);
}

TEST(LinearCudaTest, ForwardWithoutBiasMatchesCpu) {
  SKIP_WITHOUT_GPU();
  LinearInputs x;
  DeviceArray<bf16> inp(N * C), weight(OC * C), out(N * OC);
  inp.Upload(x.inp);
  weight.Upload(x.weight);
  auto matmul = Matmul::Create();
  ASSERT_THAT(matmul, IsOk());
  ASSERT_THAT(
      LinearForward(out.get(), inp.get(), weight.get(), nullptr, N, C, OC, **matmul, nullptr),
      IsOk());
  std::vector<double> expected(N * OC);
  ops::LinearForward<double>(expected.data(), x.inp.data(), x.weight.data(), nullptr, N, C, OC);
  ExpectParity("out", out.Download(), expected, kBf16Tolerance);
}

TEST(LinearCudaTest, BackwardInputAccumulatesLikeCpu) {
  SKIP_WITHOUT_GPU();
  LinearInputs x;
  const std::vector<double> dinp_before = RoundedToBf16(RandomVector(N * C, 5));
  DeviceArray<bf16> dout(N * OC), weight(OC * C), dinp(N * C);
  dout.Upload(x.dout);
  weight.Upload(x.weight);
  dinp.Upload(dinp_before);
  auto matmul = Matmul::Create();
  ASSERT_THAT(matmul, IsOk());
  ASSERT_THAT(
      LinearBackwardInput(dinp.get(), dout.get(), weight.get(), N, C, OC, **matmul, nullptr),
      IsOk());
  std::vector<double> expected = dinp_before;
  ops::LinearBackwardInput(expected.data(), x.dout.data(), x.weight.data(), N, C, OC);
  ExpectParity("dinp", dinp.Download(), expected, kBf16Tolerance);
}

TEST(LinearCudaTest, BackwardWeightsAccumulateLikeCpu) {
  SKIP_WITHOUT_GPU();
  LinearInputs x;
  const std::vector<double> dweight_before = RandomVector(OC * C, 6);
  const std::vector<double> dbias_before = RandomVector(OC, 7);
  DeviceArray<bf16> dout(N * OC), inp(N * C);
  DeviceArray<float> dweight(OC * C), dbias(OC);
  dout.Upload(x.dout);
  inp.Upload(x.inp);
  dweight.Upload(dweight_before);
  dbias.Upload(dbias_before);
  auto matmul = Matmul::Create();
  ASSERT_THAT(matmul, IsOk());
  ASSERT_THAT(LinearBackwardWeights(dweight.get(), dbias.get(), dout.get(), inp.get(), N, C, OC,
                                    **matmul, nullptr),
              IsOk());
  std::vector<double> expected_dweight = testing::RoundedToFloat(dweight_before);
  std::vector<double> expected_dbias = testing::RoundedToFloat(dbias_before);
  ops::LinearBackwardWeights(expected_dweight.data(), expected_dbias.data(), x.dout.data(),
                             x.inp.data(), N, C, OC);
  // bf16 inputs, fp32 accumulation and output: only the products' summation order differs.
  ExpectParity("dweight", dweight.Download(), expected_dweight, 1e-4);
  ExpectParity("dbias", dbias.Download(), expected_dbias, 1e-4);
}

}  // namespace
}  // namespace stagehand::ops::cuda
#else
#include "gtest/gtest.h"
TEST(LinearCudaTest, BuiltWithoutConfigCuda) { GTEST_SKIP() << "built without --config=cuda"; }
#endif  // STAGEHAND_CUDA
