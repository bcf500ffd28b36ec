// Tests of the caching allocator's policy on a host test backing: reuse, rounding, counters,
// release, and the retry when the backing is full. Not a test of cudaMalloc (see the GPU test).
#include "ops/cuda/caching_allocator.h"

#include <cstdlib>
#include <memory>
#include <set>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::ops::cuda {
namespace {

using ::stagehand::testing::IsOk;
using ::stagehand::testing::StatusIs;

// Host memory with a capacity, recording what it handed out.
class TestBacking : public MemoryBacking {
 public:
  struct Record {
    int64_t allocations = 0;
    int64_t frees = 0;
    int64_t live_bytes = 0;
    std::set<void*> live;
  };
  TestBacking(int64_t capacity_bytes, Record* record)
      : capacity_bytes_(capacity_bytes), record_(record) {}

  absl::StatusOr<void*> Allocate(size_t bytes) override {
    if (record_->live_bytes + static_cast<int64_t>(bytes) > capacity_bytes_) {
      return absl::ResourceExhaustedError("test backing full");
    }
    void* block = std::malloc(bytes);
    sizes_[block] = bytes;
    record_->live.insert(block);
    record_->live_bytes += static_cast<int64_t>(bytes);
    ++record_->allocations;
    return block;
  }
  absl::Status Free(void* pointer) override {
    if (record_->live.erase(pointer) == 0) return absl::InternalError("unknown pointer");
    record_->live_bytes -= static_cast<int64_t>(sizes_[pointer]);
    ++record_->frees;
    std::free(pointer);
    return absl::OkStatus();
  }

 private:
  int64_t capacity_bytes_;
  Record* record_;
  std::map<void*, size_t> sizes_;
};

CachingAllocator MakeAllocator(TestBacking::Record* record, int64_t capacity = int64_t{1} << 30) {
  return CachingAllocator(std::make_unique<TestBacking>(capacity, record),
                          CachingAllocatorOptions{});
}

TEST(CachingAllocatorTest, FreedBlockIsReusedWithoutTheBacking) {
  TestBacking::Record record;
  CachingAllocator allocator = MakeAllocator(&record);
  absl::StatusOr<void*> first = allocator.Allocate(1000);
  ASSERT_THAT(first, IsOk());
  ASSERT_THAT(allocator.Free(*first), IsOk());
  absl::StatusOr<void*> second = allocator.Allocate(1000);
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ(*second, *first);
  EXPECT_EQ(record.allocations, 1);
  EXPECT_EQ(allocator.stats().cache_hits, 1);
}

TEST(CachingAllocatorTest, SizesInOneClassShareBlocks) {
  TestBacking::Record record;
  CachingAllocator allocator = MakeAllocator(&record);
  // 5000 and 5100 bytes both round to 5120 (10 units of 512, steps of 2 units in [8, 16)).
  EXPECT_EQ(allocator.RoundedSize(5000), 5120u);
  EXPECT_EQ(allocator.RoundedSize(5100), 5120u);
  absl::StatusOr<void*> first = allocator.Allocate(5000);
  ASSERT_THAT(first, IsOk());
  ASSERT_THAT(allocator.Free(*first), IsOk());
  absl::StatusOr<void*> second = allocator.Allocate(5100);
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ(*second, *first);
}

TEST(CachingAllocatorTest, RoundingWastesAtMostAQuarterPlusOneUnit) {
  TestBacking::Record record;
  CachingAllocator allocator = MakeAllocator(&record);
  EXPECT_EQ(allocator.RoundedSize(0), 512u);
  EXPECT_EQ(allocator.RoundedSize(1), 512u);
  EXPECT_EQ(allocator.RoundedSize(513), 1024u);
  for (size_t bytes = 1; bytes < (size_t{1} << 26); bytes = bytes * 3 / 2 + 7) {
    const size_t rounded = allocator.RoundedSize(bytes);
    EXPECT_GE(rounded, bytes);
    EXPECT_EQ(rounded % 512, 0u);
    EXPECT_LE(rounded, bytes + bytes / 4 + 512) << bytes;
  }
}

TEST(CachingAllocatorTest, DifferentClassesDoNotShare) {
  TestBacking::Record record;
  CachingAllocator allocator = MakeAllocator(&record);
  absl::StatusOr<void*> small = allocator.Allocate(512);
  ASSERT_THAT(small, IsOk());
  ASSERT_THAT(allocator.Free(*small), IsOk());
  absl::StatusOr<void*> large = allocator.Allocate(4096);
  ASSERT_THAT(large, IsOk());
  EXPECT_NE(*large, *small);
  EXPECT_EQ(record.allocations, 2);
}

TEST(CachingAllocatorTest, CountersTrackInUsePeakAndCached) {
  TestBacking::Record record;
  CachingAllocator allocator = MakeAllocator(&record);
  absl::StatusOr<void*> a = allocator.Allocate(1024);
  absl::StatusOr<void*> b = allocator.Allocate(2048);
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(allocator.stats().in_use_bytes, 3072);
  ASSERT_THAT(allocator.Free(*a), IsOk());
  EXPECT_EQ(allocator.stats().in_use_bytes, 2048);
  EXPECT_EQ(allocator.stats().peak_in_use_bytes, 3072);
  EXPECT_EQ(allocator.stats().cached_bytes, 1024);
  EXPECT_EQ(allocator.stats().reserved_bytes, 3072);
  allocator.ResetPeak();
  EXPECT_EQ(allocator.stats().peak_in_use_bytes, 2048);
}

TEST(CachingAllocatorTest, ReleaseCachedReturnsOnlyFreeBlocks) {
  TestBacking::Record record;
  CachingAllocator allocator = MakeAllocator(&record);
  absl::StatusOr<void*> kept = allocator.Allocate(1024);
  absl::StatusOr<void*> freed = allocator.Allocate(1024);
  ASSERT_THAT(kept, IsOk());
  ASSERT_THAT(freed, IsOk());
  ASSERT_THAT(allocator.Free(*freed), IsOk());
  ASSERT_THAT(allocator.ReleaseCached(), IsOk());
  EXPECT_EQ(record.frees, 1);
  EXPECT_EQ(record.live.count(*kept), 1u);
  EXPECT_EQ(allocator.stats().cached_bytes, 0);
  EXPECT_EQ(allocator.stats().reserved_bytes, 1024);
}

TEST(CachingAllocatorTest, FullBackingReleasesCacheAndRetries) {
  TestBacking::Record record;
  CachingAllocator allocator = MakeAllocator(&record, /*capacity=*/4096);
  absl::StatusOr<void*> small = allocator.Allocate(2048);
  ASSERT_THAT(small, IsOk());
  ASSERT_THAT(allocator.Free(*small), IsOk());
  // 4096 does not fit next to the cached 2048 block; the cache is released, then it fits.
  absl::StatusOr<void*> large = allocator.Allocate(4096);
  ASSERT_THAT(large, IsOk());
  EXPECT_EQ(record.frees, 1);
  EXPECT_EQ(allocator.stats().reserved_bytes, 4096);
}

TEST(CachingAllocatorTest, TooLargeIsResourceExhausted) {
  TestBacking::Record record;
  CachingAllocator allocator = MakeAllocator(&record, /*capacity=*/4096);
  EXPECT_THAT(allocator.Allocate(8192),
              StatusIs(absl::StatusCode::kResourceExhausted, ::testing::HasSubstr("8192")));
}

TEST(CachingAllocatorTest, FreeOfUnknownPointerIsInvalidArgument) {
  TestBacking::Record record;
  CachingAllocator allocator = MakeAllocator(&record);
  int not_ours = 0;
  EXPECT_THAT(allocator.Free(&not_ours), StatusIs(absl::StatusCode::kInvalidArgument));
  absl::StatusOr<void*> block = allocator.Allocate(16);
  ASSERT_THAT(block, IsOk());
  ASSERT_THAT(allocator.Free(*block), IsOk());
  EXPECT_THAT(allocator.Free(*block), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(CachingAllocatorTest, DestructorReturnsCachedBlocks) {
  TestBacking::Record record;
  {
    CachingAllocator allocator = MakeAllocator(&record);
    absl::StatusOr<void*> block = allocator.Allocate(100);
    ASSERT_THAT(block, IsOk());
    ASSERT_THAT(allocator.Free(*block), IsOk());
  }
  EXPECT_TRUE(record.live.empty());
}

}  // namespace
}  // namespace stagehand::ops::cuda
