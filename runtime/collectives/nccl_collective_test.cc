// NcclCollective on the GPU: a one-rank group (everywhere a GPU is) through every call, the id
// shared through a signed store as the cluster shares it; two ranks in one process on two GPUs
// where there are two, bitwise the host's ordered sums. Outputs are poisoned first. GPU only.
#ifdef STAGEHAND_CUDA
#include "runtime/collectives/nccl_collective.h"

#include <cuda_runtime_api.h>

#include <memory>
#include <thread>
#include <vector>

#include "gloo/rendezvous/hash_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ops/cuda/gpu_test_util.h"
#include "runtime/collectives/authenticated_store.h"
#include "runtime/collectives/collective.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::runtime {
namespace {

using ::stagehand::ops::cuda::testing::DeviceArray;
using ::stagehand::ops::cuda::testing::RandomFloats;
using ::stagehand::testing::IsOk;
using ::stagehand::testing::StatusIs;
using ::testing::HasSubstr;

absl::Span<const float> Const(DeviceArray<float>& a) {
  return absl::MakeConstSpan(a.get(), a.size());
}
absl::Span<float> Mutable(DeviceArray<float>& a) { return absl::MakeSpan(a.get(), a.size()); }

std::vector<float> AsFloats(const std::vector<double>& v) {
  return std::vector<float>(v.begin(), v.end());
}

std::unique_ptr<NcclCollective> OneRank() {
  absl::StatusOr<std::vector<char>> id = NcclCollective::NewId();
  EXPECT_THAT(id.status(), IsOk());
  if (!id.ok()) return nullptr;
  absl::StatusOr<std::unique_ptr<NcclCollective>> c = NcclCollective::FromId(*id, {});
  EXPECT_THAT(c.status(), IsOk());
  return c.ok() ? std::move(*c) : nullptr;
}

TEST(NcclCollectiveTest, OneRankGroupRunsEveryCall) {
  SKIP_WITHOUT_GPU();
  std::unique_ptr<NcclCollective> c = OneRank();
  ASSERT_NE(c, nullptr);
  constexpr int64_t kN = 5000;
  const std::vector<float> values = RandomFloats(kN, 1, 3.0);
  DeviceArray<float> in(kN), out(kN);
  in.UploadRaw(values);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  ASSERT_THAT(c->ReduceScatterSum(Const(in), Mutable(out), stream), IsOk());
  EXPECT_EQ(AsFloats(out.Download()), values);
  out.Poison();
  ASSERT_THAT(c->AllGather(Const(in), Mutable(out), stream), IsOk());
  EXPECT_EQ(AsFloats(out.Download()), values);
  out.Poison();
  ASSERT_THAT(c->AllToAllV(Const(in), {kN}, Mutable(out), {kN}, stream), IsOk());
  EXPECT_EQ(AsFloats(out.Download()), values);
  ASSERT_THAT(c->AllReduceSum(Mutable(in), stream), IsOk());
  EXPECT_EQ(AsFloats(in.Download()), values);
  out.Poison();
  ASSERT_THAT(c->AllGatherV(Const(in), {kN}, Mutable(out), stream), IsOk());
  EXPECT_EQ(AsFloats(out.Download()), values);
  ASSERT_THAT(c->AllGatherV(Const(out), {kN}, Mutable(out), stream), IsOk());  // in place
  EXPECT_EQ(AsFloats(out.Download()), values);
  std::vector<double> scalars;
  ASSERT_THAT(c->AllGatherScalar(2.5, &scalars, stream), IsOk());
  EXPECT_EQ(scalars, std::vector<double>{2.5});
  cudaStreamDestroy(stream);
}

TEST(NcclCollectiveTest, TheIdTravelsThroughTheSignedStore) {
  SKIP_WITHOUT_GPU();
  gloo::rendezvous::HashStore inner;
  AuthenticatedStore store(inner, "launch secret");
  NcclGroupOptions options;
  options.name = "dp.s0";
  absl::StatusOr<std::unique_ptr<NcclCollective>> c = NcclCollective::Connect(store, options);
  ASSERT_THAT(c.status(), IsOk());
  EXPECT_EQ(inner.get("dp.s0/nccl_unique_id").size(), 128u + 32u);  // the id and its MAC
  std::vector<double> scalars;
  ASSERT_THAT((*c)->AllGatherScalar(-1.0, &scalars, nullptr), IsOk());
  EXPECT_EQ(scalars, std::vector<double>{-1.0});
}

TEST(NcclCollectiveTest, BadArgumentsAndAnAbortedGroupAreErrors) {
  NcclGroupOptions options;
  EXPECT_THAT(NcclCollective::FromId(std::vector<char>(12), options).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("an id of 12 bytes")));
  options.member = 3;
  EXPECT_THAT(NcclCollective::FromId(std::vector<char>(128), options).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("member 3 of 1")));
  SKIP_WITHOUT_GPU();
  std::unique_ptr<NcclCollective> c = OneRank();
  ASSERT_NE(c, nullptr);
  DeviceArray<float> in(10), out(9);
  EXPECT_THAT(c->ReduceScatterSum(Const(in), Mutable(out), nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("shard buffer has 9")));
  EXPECT_THAT(c->AllToAllV(Const(in), {9}, Mutable(out), {9}, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("counts sum to 9")));
  c->Abort();
  EXPECT_THAT(c->AllReduceSum(Mutable(in), nullptr),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("aborted")));
}

// Two members, one per GPU, each on its own thread (ncclCommInitRank blocks until both join).
TEST(NcclCollectiveTest, TwoRanksOnTwoGpusSumInMemberOrder) {
  SKIP_WITHOUT_GPU();
  int devices = 0;
  ASSERT_EQ(cudaGetDeviceCount(&devices), cudaSuccess);
  if (devices < 2) GTEST_SKIP() << "two ranks need two GPUs; this machine has " << devices;
  constexpr int kSize = 2;
  constexpr int64_t kN = 4099;  // odd: member 0's shard is one longer
  absl::StatusOr<std::vector<char>> id = NcclCollective::NewId();
  ASSERT_THAT(id.status(), IsOk());
  std::vector<std::vector<float>> inputs = {RandomFloats(kN, 11, 1e4), RandomFloats(kN, 12, 1e-3)};
  std::vector<absl::Span<const float>> spans(inputs.begin(), inputs.end());
  std::vector<float> want(kN);
  ASSERT_THAT(SumInMemberOrder(spans, absl::MakeSpan(want)), IsOk());
  std::vector<std::vector<float>> reduced(kSize), scattered(kSize);
  std::vector<std::thread> threads;
  for (int m = 0; m < kSize; ++m) {
    threads.emplace_back([&, m] {
      ASSERT_EQ(cudaSetDevice(m), cudaSuccess);
      NcclGroupOptions options;
      options.member = m;
      options.size = kSize;
      options.device = m;
      absl::StatusOr<std::unique_ptr<NcclCollective>> c = NcclCollective::FromId(*id, options);
      ASSERT_THAT(c.status(), IsOk());
      DeviceArray<float> buffer(kN), shard(ShardLength(kN, kSize, m));
      buffer.UploadRaw(inputs[m]);
      ASSERT_THAT((*c)->ReduceScatterSum(Const(buffer), Mutable(shard), nullptr), IsOk());
      scattered[m] = AsFloats(shard.Download());
      ASSERT_THAT((*c)->AllReduceSum(Mutable(buffer), nullptr), IsOk());
      reduced[m] = AsFloats(buffer.Download());
    });
  }
  for (std::thread& t : threads) t.join();
  for (int m = 0; m < kSize; ++m) {
    EXPECT_EQ(reduced[m], want) << "member " << m;
    EXPECT_EQ(scattered[m], std::vector<float>(want.begin() + ShardBegin(kN, kSize, m),
                                               want.begin() + ShardEnd(kN, kSize, m)))
        << "member " << m;
  }
}

}  // namespace
}  // namespace stagehand::runtime
#else
#include "gtest/gtest.h"
TEST(NcclCollectiveTest, BuiltWithoutConfigCuda) { GTEST_SKIP() << "built without --config=cuda"; }
#endif  // STAGEHAND_CUDA
