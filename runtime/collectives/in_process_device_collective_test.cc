// The replicas of one process on one GPU: three members on three threads, every member ending
// with the host's member-ordered sum bit for bit, called twice with different lengths (the
// scratch grows), outputs poisoned first. GPU only.
#ifdef STAGEHAND_CUDA
#include "runtime/collectives/in_process_device_collective.h"

#include <cuda_runtime_api.h>

#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ops/cuda/gpu_test_util.h"
#include "runtime/collectives/collective.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::runtime {
namespace {

using ::stagehand::ops::cuda::testing::DeviceArray;
using ::stagehand::ops::cuda::testing::RandomFloats;
using ::stagehand::testing::IsOk;
using ::stagehand::testing::StatusIs;

TEST(InProcessDeviceCollectiveTest, EveryMemberEndsWithTheHostsOrderedSum) {
  SKIP_WITHOUT_GPU();
  constexpr int kSize = 3;
  InProcessGroup group(kSize, /*latency_us=*/50);
  for (int64_t n : {int64_t{1000}, int64_t{70001}}) {
    std::vector<std::vector<float>> inputs;
    for (int m = 0; m < kSize; ++m)
      inputs.push_back(RandomFloats(n, 7 * n + m, m == 1 ? 1e5 : 1e-2));
    std::vector<absl::Span<const float>> spans(inputs.begin(), inputs.end());
    std::vector<float> want(n);
    ASSERT_THAT(SumInMemberOrder(spans, absl::MakeSpan(want)), IsOk());
    std::vector<std::vector<double>> got(kSize);
    std::vector<std::thread> threads;
    for (int m = 0; m < kSize; ++m) {
      threads.emplace_back([&, m] {
        InProcessDeviceCollective member(&group, m, 0);
        cudaStream_t stream;
        ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
        DeviceArray<float> buffer(n);
        buffer.UploadRaw(inputs[m]);
        EXPECT_THAT(member.AllReduceSum(absl::MakeSpan(buffer.get(), n), stream), IsOk());
        got[m] = buffer.Download();
        cudaStreamDestroy(stream);
      });
    }
    for (std::thread& t : threads) t.join();
    for (int m = 0; m < kSize; ++m) {
      EXPECT_EQ(got[m], std::vector<double>(want.begin(), want.end())) << "member " << m;
    }
  }
}

TEST(InProcessDeviceCollectiveTest, MismatchedLengthsAndAnAbortedGroupAreErrors) {
  SKIP_WITHOUT_GPU();
  InProcessGroup group(2);
  std::vector<absl::Status> results(2);
  std::vector<std::thread> threads;
  for (int m = 0; m < 2; ++m) {
    threads.emplace_back([&, m] {
      InProcessDeviceCollective member(&group, m, 0);
      DeviceArray<float> buffer(10 + m);
      results[m] = member.AllReduceSum(absl::MakeSpan(buffer.get(), 10 + m), nullptr);
    });
  }
  for (std::thread& t : threads) t.join();
  for (const absl::Status& s : results) {
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("passes")));
  }
  group.Abort("replica 1 failed its step");
  InProcessDeviceCollective member(&group, 0, 0);
  DeviceArray<float> buffer(4);
  EXPECT_THAT(member.AllReduceSum(absl::MakeSpan(buffer.get(), 4), nullptr),
              StatusIs(absl::StatusCode::kAborted));
}

}  // namespace
}  // namespace stagehand::runtime
#else
#include "gtest/gtest.h"
TEST(InProcessDeviceCollectiveTest, BuiltWithoutConfigCuda) {
  GTEST_SKIP() << "built without --config=cuda";
}
#endif  // STAGEHAND_CUDA
