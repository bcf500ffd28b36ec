// Parity of the CUDA multi-tensor AdamW (fp32) with the CPU float64 path: global norm, clip
// factor, parameters, moments and the bf16 copy, with and without clipping; and bitwise
// repeatability. Outputs poisoned first. GPU only.
#ifdef STAGEHAND_CUDA
#include "ops/cuda/adamw.h"

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "ops/cpu/adamw.h"
#include "ops/cpu/test_util.h"
#include "ops/cuda/gpu_test_util.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::ops::cuda {
namespace {

using ::stagehand::ops::testing::RandomVector;
using ::stagehand::testing::IsOk;
using ::stagehand::testing::StatusIs;
using testing::DeviceArray;
using testing::ExpectParity;
using testing::RoundedToBf16;
using testing::RoundedToFloat;

constexpr double kFloatTolerance = 1e-4;
constexpr int kStep = 3;
// 70000 spans two chunks of 65536; 33 is smaller than a block.
const std::vector<int64_t> kSizes = {1000, 70000, 33};

struct HostTensor {
  std::vector<double> params, grads, m, v;
};

struct DeviceTensor {
  explicit DeviceTensor(int64_t n) : params(n), grads(n), m(n), v(n), params_bf16(n) {}
  DeviceArray<float> params, grads, m, v;
  DeviceArray<bf16> params_bf16;
};

AdamWOptions Options() {
  AdamWOptions options;
  options.learning_rate = 1e-3;
  options.weight_decay = 0.1;
  return options;
}

std::vector<HostTensor> MakeHostTensors() {
  std::vector<HostTensor> tensors;
  uint64_t seed = 10;
  for (int64_t n : kSizes) {
    HostTensor t;
    t.params = RoundedToFloat(RandomVector(n, seed++));
    t.grads = RoundedToFloat(RandomVector(n, seed++, -0.1, 0.1));
    t.m = RoundedToFloat(RandomVector(n, seed++, -0.01, 0.01));
    t.v = RoundedToFloat(RandomVector(n, seed++, 0.0, 1e-4));
    tensors.push_back(t);
  }
  return tensors;
}

// Runs one GPU step on fresh device copies of `host`; returns the device tensors and the norm.
std::vector<std::unique_ptr<DeviceTensor>> RunGpuStep(const std::vector<HostTensor>& host,
                                                      double max_norm, double* norm) {
  std::vector<std::unique_ptr<DeviceTensor>> device;
  std::vector<AdamWTensor> descriptors;
  for (size_t i = 0; i < host.size(); ++i) {
    auto t = std::make_unique<DeviceTensor>(kSizes[i]);
    t->params.Upload(host[i].params);
    t->grads.Upload(host[i].grads);
    t->m.Upload(host[i].m);
    t->v.Upload(host[i].v);
    descriptors.push_back(AdamWTensor{t->params.get(), t->grads.get(), t->m.get(), t->v.get(),
                                      t->params_bf16.get(), kSizes[i]});
    device.push_back(std::move(t));
  }
  auto optimizer = MultiTensorAdamW::Create(descriptors);
  EXPECT_THAT(optimizer, IsOk());
  if (!optimizer.ok()) return device;
  EXPECT_THAT((*optimizer)->Step(Options(), kStep, max_norm, nullptr), IsOk());
  float norm_value = 0.0f;
  EXPECT_EQ(
      cudaMemcpy(&norm_value, (*optimizer)->device_norm(), sizeof(float), cudaMemcpyDeviceToHost),
      cudaSuccess);
  *norm = norm_value;
  return device;
}

void ExpectStepMatchesCpu(double max_norm) {
  std::vector<HostTensor> host = MakeHostTensors();
  double gpu_norm = 0.0;
  std::vector<std::unique_ptr<DeviceTensor>> device = RunGpuStep(host, max_norm, &gpu_norm);
  double sum_of_squares = 0.0;
  for (const HostTensor& t : host) {
    sum_of_squares += ops::SumOfSquares(t.grads.data(), static_cast<int64_t>(t.grads.size()));
  }
  const double norm = std::sqrt(sum_of_squares);
  ExpectParity("global_norm", {gpu_norm}, {norm}, kFloatTolerance);
  const double scale = ops::ClipScale(norm, max_norm);
  for (size_t i = 0; i < host.size(); ++i) {
    HostTensor& t = host[i];
    ops::AdamWUpdate(t.params.data(), t.grads.data(), t.m.data(), t.v.data(), kSizes[i], Options(),
                     kStep, scale);
    const std::string tensor = "tensor" + std::to_string(i);
    ExpectParity((tensor + ".params").c_str(), device[i]->params.Download(), t.params,
                 kFloatTolerance);
    ExpectParity((tensor + ".m").c_str(), device[i]->m.Download(), t.m, kFloatTolerance);
    ExpectParity((tensor + ".v").c_str(), device[i]->v.Download(), t.v, kFloatTolerance);
    ExpectParity((tensor + ".params_bf16").c_str(), device[i]->params_bf16.Download(), t.params,
                 1e-2);
  }
}

TEST(AdamWCudaTest, ClippedStepMatchesCpu) {
  SKIP_WITHOUT_GPU();
  // The gradients' norm is about 15 (71033 values of rms 0.058): clipping to 1 is active.
  ExpectStepMatchesCpu(/*max_norm=*/1.0);
}

TEST(AdamWCudaTest, UnclippedStepMatchesCpu) {
  SKIP_WITHOUT_GPU();
  ExpectStepMatchesCpu(/*max_norm=*/0.0);
}

TEST(AdamWCudaTest, StepIsBitwiseRepeatable) {
  SKIP_WITHOUT_GPU();
  const std::vector<HostTensor> host = MakeHostTensors();
  double first_norm = 0.0, second_norm = 0.0;
  auto first = RunGpuStep(host, 1.0, &first_norm);
  auto second = RunGpuStep(host, 1.0, &second_norm);
  EXPECT_EQ(first_norm, second_norm);
  for (size_t i = 0; i < host.size(); ++i) {
    EXPECT_EQ(first[i]->params.Download(), second[i]->params.Download()) << i;
  }
}

TEST(AdamWCudaTest, EmptyTensorIsInvalidArgument) {
  SKIP_WITHOUT_GPU();
  DeviceArray<float> buffer(4);
  const AdamWTensor empty{buffer.get(), buffer.get(), buffer.get(), buffer.get(), nullptr, 0};
  EXPECT_THAT(MultiTensorAdamW::Create({empty}), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace stagehand::ops::cuda
#else
#include "gtest/gtest.h"
TEST(AdamWCudaTest, BuiltWithoutConfigCuda) { GTEST_SKIP() << "built without --config=cuda"; }
#endif  // STAGEHAND_CUDA
