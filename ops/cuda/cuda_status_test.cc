// Tests that CUDA and cuBLASLt errors become statuses with the right code, place and hint, and
// that ProbeDevice either finds a GPU or says "no GPU". Not a test of any kernel.
#ifdef STAGEHAND_CUDA
#include "ops/cuda/cuda_status.h"

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ops/cuda/device.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::ops::cuda {
namespace {

using ::stagehand::testing::IsOk;
using ::stagehand::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

TEST(CudaStatusTest, SuccessIsOk) {
  EXPECT_THAT(CudaStatus(cudaSuccess, "call()", "file.cc", 1), IsOk());
  EXPECT_THAT(CublasLtStatus(CUBLAS_STATUS_SUCCESS, "call()", "file.cc", 1), IsOk());
}

TEST(CudaStatusTest, NoDriverSaysNoGpu) {
  EXPECT_THAT(
      CudaStatus(cudaErrorInsufficientDriver, "cudaMalloc(&p, 4)", "x.cc", 7),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               AllOf(HasSubstr("no GPU"), HasSubstr("cudaMalloc(&p, 4)"), HasSubstr("x.cc:7"),
                     HasSubstr("cudaErrorInsufficientDriver"), HasSubstr("35"))));
}

TEST(CudaStatusTest, NoDeviceSaysNoGpu) {
  EXPECT_THAT(CudaStatus(cudaErrorNoDevice, "cudaSetDevice(0)", "x.cc", 9),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no GPU")));
}

TEST(CudaStatusTest, OutOfMemoryIsResourceExhausted) {
  EXPECT_THAT(CudaStatus(cudaErrorMemoryAllocation, "cudaMalloc", "x.cc", 3),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("out of device memory")));
}

TEST(CudaStatusTest, KernelFaultIsInternalWithSanitizerHint) {
  EXPECT_THAT(CudaStatus(cudaErrorIllegalAddress, "cudaStreamSynchronize(s)", "x.cc", 3),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("compute-sanitizer")));
}

TEST(CudaStatusTest, CublasLtUnsupportedIsInvalidArgument) {
  EXPECT_THAT(CublasLtStatus(CUBLAS_STATUS_NOT_SUPPORTED, "cublasLtMatmul(...)", "m.cc", 5),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("CUBLAS_STATUS_NOT_SUPPORTED"), HasSubstr("m.cc:5"))));
}

absl::Status FailingCall() {
  CUDA_RETURN_IF_ERROR(cudaErrorNoDevice);
  return absl::OkStatus();
}

TEST(CudaStatusTest, MacroReturnsTheErrorWithTheCallText) {
  EXPECT_THAT(FailingCall(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("cudaErrorNoDevice"), HasSubstr("cuda_status_test.cc"))));
}

// Either there is a usable GPU, or the status says "no GPU" and why: never another failure.
TEST(ProbeDeviceTest, FindsAGpuOrSaysNoGpu) {
  const absl::StatusOr<DeviceInfo> info = ProbeDevice();
  if (info.ok()) {
    EXPECT_GT(info->device_count, 0);
    EXPECT_GE(info->compute_major, 9);
    EXPECT_FALSE(info->name.empty());
    std::cout << "device: " << DescribeDevice(*info) << "\n";
  } else {
    EXPECT_THAT(info, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no GPU")));
    std::cout << "no GPU here: " << info.status().message() << "\n";
  }
}

}  // namespace
}  // namespace stagehand::ops::cuda
#else
#include "gtest/gtest.h"
TEST(CudaStatusTest, BuiltWithoutConfigCuda) { GTEST_SKIP() << "built without --config=cuda"; }
#endif  // STAGEHAND_CUDA
