// Helpers for the GPU parity tests: device buffers filled from host doubles (rounded to bf16 or
// fp32), poisoned with NaN bits before a kernel writes them, read back as doubles; and a skip
// with the reason when there is no GPU. Test-only; not an allocator for real runs.
#ifndef STAGEHAND_OPS_CUDA_GPU_TEST_UTIL_H_
#define STAGEHAND_OPS_CUDA_GPU_TEST_UTIL_H_

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "ops/cuda/device.h"
#include "ops/cuda/launch.h"

namespace stagehand::ops::cuda::testing {

// Round to nearest even, as __float2bfloat16 does.
inline uint16_t ToBf16Bits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  if ((bits & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;  // NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

inline float FromBf16Bits(uint16_t half) {
  const uint32_t bits = static_cast<uint32_t>(half) << 16;
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

// The values a bf16 tensor holds after rounding `values`: what the CPU reference should see.
inline std::vector<double> RoundedToBf16(const std::vector<double>& values) {
  std::vector<double> rounded(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    rounded[i] = FromBf16Bits(ToBf16Bits(static_cast<float>(values[i])));
  }
  return rounded;
}

inline std::vector<double> RoundedToFloat(const std::vector<double>& values) {
  std::vector<double> rounded(values.size());
  for (size_t i = 0; i < values.size(); ++i) rounded[i] = static_cast<float>(values[i]);
  return rounded;
}

// n floats uniform in [-scale, scale), from `seed`: inputs for exact (bitwise) comparisons.
inline std::vector<float> RandomFloats(int64_t n, uint64_t seed, double scale) {
  std::mt19937_64 random(seed);
  std::uniform_real_distribution<double> uniform(-scale, scale);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(uniform(random));
  return v;
}

// A cudaMalloc'd array of T (bf16, float or int32_t); test failures on CUDA errors.
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(int64_t size) : size_(size) {
    EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&data_), Bytes()), cudaSuccess)
        << "cudaMalloc " << Bytes();
    Poison();
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { cudaFree(data_); }

  T* get() { return data_; }
  int64_t size() const { return size_; }
  size_t Bytes() const { return static_cast<size_t>(size_) * sizeof(T); }

  // All bytes 0xff: NaN in bf16 and fp32, so an element a kernel fails to write shows up.
  void Poison() { EXPECT_EQ(cudaMemset(data_, 0xff, Bytes()), cudaSuccess); }

  // Uploads `values` converted to T (bf16 rounds to nearest even).
  void Upload(const std::vector<double>& values) {
    EXPECT_EQ(static_cast<int64_t>(values.size()), size_);
    std::vector<T> host(values.size());
    for (size_t i = 0; i < values.size(); ++i) host[i] = Convert(values[i]);
    EXPECT_EQ(cudaMemcpy(data_, host.data(), Bytes(), cudaMemcpyHostToDevice), cudaSuccess);
  }

  void UploadRaw(const std::vector<T>& host) {
    EXPECT_EQ(static_cast<int64_t>(host.size()), size_);
    EXPECT_EQ(cudaMemcpy(data_, host.data(), Bytes(), cudaMemcpyHostToDevice), cudaSuccess);
  }

  // Waits for the device, then copies back as doubles.
  std::vector<double> Download() const {
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    std::vector<T> host(size_);
    EXPECT_EQ(cudaMemcpy(host.data(), data_, Bytes(), cudaMemcpyDeviceToHost), cudaSuccess);
    std::vector<double> values(size_);
    for (int64_t i = 0; i < size_; ++i) values[i] = ToDouble(host[i]);
    return values;
  }

 private:
  static T Convert(double value) {
    if constexpr (std::is_same_v<T, bf16>) {
      const uint16_t bits = ToBf16Bits(static_cast<float>(value));
      T result;
      std::memcpy(static_cast<void*>(&result), &bits, sizeof(bits));
      return result;
    } else {
      return static_cast<T>(value);
    }
  }
  static double ToDouble(const T& value) {
    if constexpr (std::is_same_v<T, bf16>) {
      uint16_t bits;
      std::memcpy(&bits, &value, sizeof(bits));
      return FromBf16Bits(bits);
    } else {
      return static_cast<double>(value);
    }
  }

  T* data_ = nullptr;
  int64_t size_;
};

// Expects max |actual - expected| / max |expected| below tolerance, and prints the measured
// error as "parity <test>.<tensor> max_rel_err=<e> tolerance=<t>", the line run_gpu_checks.sh
// collects into its table.
inline void ExpectParity(const char* tensor, const std::vector<double>& actual,
                         const std::vector<double>& expected, double tolerance) {
  ASSERT_EQ(actual.size(), expected.size()) << tensor;
  double max_difference = 0.0;
  double scale = 0.0;
  for (size_t i = 0; i < expected.size(); ++i) {
    const double difference = std::abs(actual[i] - expected[i]);
    // NaN (a poisoned, unwritten element) must fail: compare so that NaN counts as infinite.
    if (std::isnan(difference)) {
      max_difference = INFINITY;
    } else {
      max_difference = std::max(max_difference, difference);
    }
    scale = std::max(scale, std::abs(expected[i]));
  }
  const double error = max_difference / std::max(scale, 1e-300);
  const ::testing::TestInfo* test = ::testing::UnitTest::GetInstance()->current_test_info();
  std::printf("parity %s.%s.%s max_rel_err=%.3g tolerance=%.0e\n", test->test_suite_name(),
              test->name(), tensor, error, tolerance);
  EXPECT_LT(error, tolerance) << tensor;
}

}  // namespace stagehand::ops::cuda::testing

// Skips the test, saying why, unless a usable GPU is present.
#define SKIP_WITHOUT_GPU()                                                             \
  do {                                                                                 \
    const absl::StatusOr<::stagehand::ops::cuda::DeviceInfo> stagehand_device_ =       \
        ::stagehand::ops::cuda::ProbeDevice();                                         \
    if (!stagehand_device_.ok()) GTEST_SKIP() << stagehand_device_.status().message(); \
  } while (false)

#endif  // STAGEHAND_OPS_CUDA_GPU_TEST_UTIL_H_
