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

// ZeRO-1's data movement: an all-to-all with uneven counts, and the gather of each member's
// owned piece back into its place in the whole buffer (in place for its own piece).
TEST(InProcessDeviceCollectiveTest, AllToAllAndGatherMoveEveryPieceToItsPlace) {
  SKIP_WITHOUT_GPU();
  constexpr int kSize = 3;
  InProcessGroup group(kSize);
  // Member i sends (i + j + 1) floats to member j, valued 100 i + j.
  const auto count = [](int i, int j) { return int64_t{i + j + 1}; };
  const std::vector<int64_t> owned = {5, 4, 4};  // a 13-float buffer's owners
  std::vector<std::vector<double>> received(kSize), gathered(kSize);
  std::vector<std::thread> threads;
  for (int m = 0; m < kSize; ++m) {
    threads.emplace_back([&, m] {
      InProcessDeviceCollective member(&group, m, 0);
      std::vector<int64_t> send(kSize), recv(kSize);
      std::vector<float> in;
      for (int j = 0; j < kSize; ++j) {
        send[j] = count(m, j);
        recv[j] = count(j, m);
        in.insert(in.end(), send[j], static_cast<float>(100 * m + j));
      }
      int64_t total = 0;
      for (int64_t r : recv) total += r;
      DeviceArray<float> from(static_cast<int64_t>(in.size())), to(total);
      from.UploadRaw(in);
      EXPECT_THAT(member.AllToAllV(absl::MakeConstSpan(from.get(), in.size()), send,
                                   absl::MakeSpan(to.get(), total), recv, nullptr),
                  IsOk());
      received[m] = to.Download();
      DeviceArray<float> whole(13);  // poisoned, but for this member's own piece
      int64_t at = 0;
      for (int j = 0; j < m; ++j) at += owned[j];
      std::vector<float> mine(owned[m], static_cast<float>(m + 1));
      EXPECT_EQ(cudaMemcpy(whole.get() + at, mine.data(), owned[m] * sizeof(float),
                           cudaMemcpyHostToDevice),
                cudaSuccess);
      EXPECT_THAT(member.AllGatherV(absl::MakeConstSpan(whole.get() + at, owned[m]), owned,
                                    absl::MakeSpan(whole.get(), 13), nullptr),
                  IsOk());
      gathered[m] = whole.Download();
    });
  }
  for (std::thread& t : threads) t.join();
  const std::vector<double> whole = {1, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3};
  for (int m = 0; m < kSize; ++m) {
    std::vector<double> want;
    for (int j = 0; j < kSize; ++j) want.insert(want.end(), count(j, m), 100.0 * j + m);
    EXPECT_EQ(received[m], want) << "member " << m;
    EXPECT_EQ(gathered[m], whole) << "member " << m;
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
