// Parity of the CUDA LayerNorm (bf16 data, fp32 statistics and weight gradients) with the CPU
// float64 path: forward (output, mean, rstd), input-gradient, weight-gradient; outputs
// poisoned first. GPU only.
#ifdef STAGEHAND_CUDA
#include "ops/cuda/layernorm.h"

#include <vector>

#include "gtest/gtest.h"
#include "ops/cpu/layernorm.h"
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
using testing::RoundedToFloat;

constexpr int N = 77, C = 96;
constexpr double kBf16Tolerance = 1e-2;
constexpr double kFloatTolerance = 1e-4;

struct LayerNormCase {
  std::vector<double> inp = RoundedToBf16(RandomVector(N * C, 1, -2.0, 3.0));
  std::vector<double> weight = RoundedToBf16(RandomVector(C, 2, 0.5, 1.5));
  std::vector<double> bias = RoundedToBf16(RandomVector(C, 3));
  std::vector<double> dout = RoundedToBf16(RandomVector(N * C, 4));
  std::vector<double> out = std::vector<double>(N * C);
  std::vector<double> mean = std::vector<double>(N);
  std::vector<double> rstd = std::vector<double>(N);
  LayerNormCase() {
    ops::LayerNormForward(out.data(), mean.data(), rstd.data(), inp.data(), weight.data(),
                          bias.data(), N, C);
  }
};

TEST(LayerNormCudaTest, ForwardMatchesCpu) {
  SKIP_WITHOUT_GPU();
  LayerNormCase x;
  DeviceArray<bf16> inp(N * C), weight(C), bias(C), out(N * C);
  DeviceArray<float> mean(N), rstd(N);
  inp.Upload(x.inp);
  weight.Upload(x.weight);
  bias.Upload(x.bias);
  ASSERT_THAT(LayerNormForward(out.get(), mean.get(), rstd.get(), inp.get(), weight.get(),
                               bias.get(), N, C, nullptr),
              IsOk());
  ExpectParity("out", out.Download(), x.out, kBf16Tolerance);
  ExpectParity("mean", mean.Download(), x.mean, kFloatTolerance);
  ExpectParity("rstd", rstd.Download(), x.rstd, kFloatTolerance);
}

TEST(LayerNormCudaTest, BackwardInputAccumulatesLikeCpu) {
  SKIP_WITHOUT_GPU();
  LayerNormCase x;
  const std::vector<double> dinp_before = RoundedToBf16(RandomVector(N * C, 5));
  DeviceArray<bf16> dinp(N * C), dout(N * C), inp(N * C), weight(C);
  DeviceArray<float> mean(N), rstd(N);
  dinp.Upload(dinp_before);
  dout.Upload(x.dout);
  inp.Upload(x.inp);
  weight.Upload(x.weight);
  mean.Upload(x.mean);
  rstd.Upload(x.rstd);
  ASSERT_THAT(LayerNormBackwardInput(dinp.get(), dout.get(), inp.get(), weight.get(), mean.get(),
                                     rstd.get(), N, C, nullptr),
              IsOk());
  std::vector<double> expected = dinp_before;
  ops::LayerNormBackwardInput(expected.data(), x.dout.data(), x.inp.data(), x.weight.data(),
                              x.mean.data(), x.rstd.data(), N, C);
  ExpectParity("dinp", dinp.Download(), expected, kBf16Tolerance);
}

TEST(LayerNormCudaTest, BackwardWeightsAccumulateLikeCpu) {
  SKIP_WITHOUT_GPU();
  LayerNormCase x;
  const std::vector<double> dweight_before = RoundedToFloat(RandomVector(C, 6));
  const std::vector<double> dbias_before = RoundedToFloat(RandomVector(C, 7));
  DeviceArray<float> dweight(C), dbias(C), mean(N), rstd(N);
  DeviceArray<bf16> dout(N * C), inp(N * C);
  dweight.Upload(dweight_before);
  dbias.Upload(dbias_before);
  dout.Upload(x.dout);
  inp.Upload(x.inp);
  mean.Upload(x.mean);
  rstd.Upload(x.rstd);
  ASSERT_THAT(LayerNormBackwardWeights(dweight.get(), dbias.get(), dout.get(), inp.get(),
                                       mean.get(), rstd.get(), N, C, nullptr),
              IsOk());
  std::vector<double> expected_dweight = dweight_before, expected_dbias = dbias_before;
  ops::LayerNormBackwardWeights(expected_dweight.data(), expected_dbias.data(), x.dout.data(),
                                x.inp.data(), x.mean.data(), x.rstd.data(), N, C);
  // fp32 statistics and sums over bf16 inputs: the fp32 path's tolerance.
  ExpectParity("dweight", dweight.Download(), expected_dweight, kFloatTolerance);
  ExpectParity("dbias", dbias.Download(), expected_dbias, kFloatTolerance);
}

}  // namespace
}  // namespace stagehand::ops::cuda
#else
#include "gtest/gtest.h"
TEST(LayerNormCudaTest, BuiltWithoutConfigCuda) { GTEST_SKIP() << "built without --config=cuda"; }
#endif  // STAGEHAND_CUDA
