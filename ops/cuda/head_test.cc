// Parity of the CUDA tied head + fused softmax cross-entropy with the CPU float64 path (linear,
// softmax cross-entropy forward and input-gradient): losses, dlogits (zero in the padded
// columns), input-gradient and weight-gradient; outputs poisoned first. GPU only.
#ifdef STAGEHAND_CUDA
#include "ops/cuda/head.h"

#include <memory>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "ops/cpu/cross_entropy.h"
#include "ops/cpu/linear.h"
#include "ops/cpu/test_util.h"
#include "ops/cuda/gpu_test_util.h"
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

constexpr int N = 48, C = 64, V = 700, Vp = 768;
constexpr double kBf16Tolerance = 1e-2;

// The CPU float64 reference over the unpadded vocabulary.
struct HeadReference {
  std::vector<int32_t> targets = RandomTokens(N, V, 1);
  std::vector<double> inp = RoundedToBf16(RandomVector(N * C, 2));
  std::vector<double> wte = RoundedToBf16(RandomVector(Vp * C, 3, -0.5, 0.5));  // (Vp, C)
  double dloss = 1.0 / N;
  std::vector<double> losses = std::vector<double>(N);
  std::vector<double> dlogits = std::vector<double>(N * V);  // (N, V)
  HeadReference() {
    std::vector<double> probs(N * V);
    ops::LinearForward<double>(probs.data(), inp.data(), wte.data(), nullptr, N, C, V);
    ops::SoftmaxCrossEntropyForward(losses.data(), probs.data(), probs.data(), targets.data(), N,
                                    V);
    const std::vector<double> dlosses(N, dloss);
    ops::SoftmaxCrossEntropyBackwardInput(dlogits.data(), probs.data(), targets.data(),
                                          dlosses.data(), N, V);
  }
};

// Device buffers for one forward, created only once a GPU is known to be there.
struct HeadDevice {
  DeviceArray<int32_t> targets{N};
  DeviceArray<bf16> inp{N * C}, wte{Vp * C}, logits{N * Vp};
  DeviceArray<float> losses{N};
};

class HeadCudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_GPU();
    auto created = Matmul::Create();
    ASSERT_THAT(created, IsOk());
    matmul_ = std::move(*created);
    device_ = std::make_unique<HeadDevice>();
    device_->targets.UploadRaw(x_.targets);
    device_->inp.Upload(x_.inp);
    device_->wte.Upload(x_.wte);
    ASSERT_THAT(HeadForwardLoss(device_->losses.get(), device_->logits.get(), device_->inp.get(),
                                device_->wte.get(), device_->targets.get(),
                                static_cast<float>(x_.dloss), N, C, V, Vp, *matmul_, nullptr),
                IsOk());
  }

  HeadReference x_;
  std::unique_ptr<Matmul> matmul_;
  std::unique_ptr<HeadDevice> device_;
};

TEST_F(HeadCudaTest, LossesMatchCpu) {
  ExpectParity("losses", device_->losses.Download(), x_.losses, kBf16Tolerance);
}

TEST_F(HeadCudaTest, DlogitsMatchCpuAndPaddingIsZero) {
  const std::vector<double> dlogits_padded = device_->logits.Download();
  std::vector<double> dlogits(N * V);
  for (int n = 0; n < N; ++n) {
    for (int v = 0; v < Vp; ++v) {
      if (v < V) {
        dlogits[n * V + v] = dlogits_padded[n * Vp + v];
      } else {
        EXPECT_EQ(dlogits_padded[n * Vp + v], 0.0) << "row " << n << " padded column " << v;
      }
    }
  }
  ExpectParity("dlogits", dlogits, x_.dlogits, kBf16Tolerance);
}

TEST_F(HeadCudaTest, BackwardInputAccumulatesLikeCpu) {
  const std::vector<double> dinp_before = RoundedToBf16(RandomVector(N * C, 4, -0.01, 0.01));
  DeviceArray<bf16> dinp(N * C);
  dinp.Upload(dinp_before);
  ASSERT_THAT(HeadBackwardInput(dinp.get(), device_->logits.get(), device_->wte.get(), N, C, Vp,
                                *matmul_, nullptr),
              IsOk());
  std::vector<double> expected = dinp_before;
  ops::LinearBackwardInput(expected.data(), x_.dlogits.data(), x_.wte.data(), N, C, V);
  ExpectParity("dinp", dinp.Download(), expected, kBf16Tolerance);
}

TEST_F(HeadCudaTest, BackwardWeightsAccumulateLikeCpuAndPaddedRowsKeepTheirValue) {
  const std::vector<double> dwte_before = RoundedToFloat(RandomVector(Vp * C, 5, -0.01, 0.01));
  DeviceArray<float> dwte(Vp * C);
  dwte.Upload(dwte_before);
  ASSERT_THAT(HeadBackwardWeights(dwte.get(), device_->logits.get(), device_->inp.get(), N, C, Vp,
                                  *matmul_, nullptr),
              IsOk());
  std::vector<double> expected = dwte_before;
  ops::LinearBackwardWeights<double>(expected.data(), nullptr, x_.dlogits.data(), x_.inp.data(), N,
                                     C, V);
  ExpectParity("dwte", dwte.Download(), expected, kBf16Tolerance);
}

}  // namespace
}  // namespace stagehand::ops::cuda
#else
#include "gtest/gtest.h"
TEST(HeadCudaTest, BuiltWithoutConfigCuda) { GTEST_SKIP() << "built without --config=cuda"; }
#endif  // STAGEHAND_CUDA
