// The caching allocator on cudaMalloc: blocks are real device memory, reused after Free, and an
// impossible request is kResourceExhausted without poisoning later ones. GPU only.
#ifdef STAGEHAND_CUDA
#include "ops/cuda/cuda_malloc_backing.h"

#include <memory>

#include "gtest/gtest.h"
#include "ops/cuda/caching_allocator.h"
#include "ops/cuda/gpu_test_util.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::ops::cuda {
namespace {

using ::stagehand::testing::IsOk;
using ::stagehand::testing::StatusIs;

TEST(CudaMallocBackingTest, CachedDeviceBlockIsReused) {
  SKIP_WITHOUT_GPU();
  CachingAllocator allocator(std::make_unique<CudaMallocBacking>(), CachingAllocatorOptions{});
  absl::StatusOr<void*> block = allocator.Allocate(1 << 20);
  ASSERT_THAT(block, IsOk());
  EXPECT_EQ(cudaMemset(*block, 0, 1 << 20), cudaSuccess);
  cudaPointerAttributes attributes;
  ASSERT_EQ(cudaPointerGetAttributes(&attributes, *block), cudaSuccess);
  EXPECT_EQ(attributes.type, cudaMemoryTypeDevice);  // not managed, not host
  ASSERT_THAT(allocator.Free(*block), IsOk());
  absl::StatusOr<void*> again = allocator.Allocate(1 << 20);
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(*again, *block);
  EXPECT_EQ(allocator.stats().backing_allocations, 1);
  ASSERT_THAT(allocator.Free(*again), IsOk());
  EXPECT_THAT(allocator.ReleaseCached(), IsOk());
}

TEST(CudaMallocBackingTest, ImpossibleRequestIsResourceExhaustedAndRecoverable) {
  SKIP_WITHOUT_GPU();
  CachingAllocator allocator(std::make_unique<CudaMallocBacking>(), CachingAllocatorOptions{});
  EXPECT_THAT(allocator.Allocate(size_t{1} << 50), StatusIs(absl::StatusCode::kResourceExhausted));
  absl::StatusOr<void*> small = allocator.Allocate(4096);
  EXPECT_THAT(small, IsOk());
  if (small.ok()) EXPECT_THAT(allocator.Free(*small), IsOk());
}

}  // namespace
}  // namespace stagehand::ops::cuda
#else
#include "gtest/gtest.h"
TEST(CudaMallocBackingTest, BuiltWithoutConfigCuda) {
  GTEST_SKIP() << "built without --config=cuda";
}
#endif  // STAGEHAND_CUDA
