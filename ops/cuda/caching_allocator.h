// A caching allocator for device memory: freed blocks go back to a cache by size class and are
// reused, so the steady state makes no cudaMalloc/cudaFree calls. The cache logic is plain host
// code over a MemoryBacking (cudaMalloc on a GPU, a test backing on the host). Not stream-aware
// and not thread-safe: one allocator per stage, used from its compute lane's owner only.
#ifndef STAGEHAND_OPS_CUDA_CACHING_ALLOCATOR_H_
#define STAGEHAND_OPS_CUDA_CACHING_ALLOCATOR_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <unordered_map>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace stagehand::ops::cuda {

// Where the memory really comes from. Allocate returns kResourceExhausted when full.
class MemoryBacking {
 public:
  virtual ~MemoryBacking() = default;
  virtual absl::StatusOr<void*> Allocate(size_t bytes) = 0;
  virtual absl::Status Free(void* pointer) = 0;
};

struct CachingAllocatorOptions {
  // Every block is at least this big and a multiple of it (cudaMalloc aligns to 256 anyway).
  size_t min_block_bytes = 512;
  // Above min_block_bytes, sizes round up to one of `steps_per_doubling` evenly spaced sizes in
  // each [2^k, 2^(k+1)): 4 steps waste at most 25% of a block, and sizes that differ slightly
  // (the last microbatch, a shorter sequence) share blocks.
  int steps_per_doubling = 4;
};

struct AllocatorStats {
  int64_t in_use_bytes = 0;         // handed out and not yet freed (rounded sizes)
  int64_t peak_in_use_bytes = 0;    // the largest in_use_bytes since creation or ResetPeak
  int64_t cached_bytes = 0;         // freed, kept for reuse
  int64_t reserved_bytes = 0;       // in use + cached: what the backing holds for us
  int64_t backing_allocations = 0;  // calls to MemoryBacking::Allocate that succeeded
  int64_t cache_hits = 0;           // Allocate calls served from the cache
};

class CachingAllocator {
 public:
  CachingAllocator(std::unique_ptr<MemoryBacking> backing, CachingAllocatorOptions options);
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;
  // Returns every cached block to the backing; blocks still in use are not freed.
  ~CachingAllocator();

  // A block of at least `bytes` (0 gives a minimum block). From the cache when a free block of
  // the same size class exists; else from the backing; if the backing is full, the cache is
  // released and the backing asked once more before kResourceExhausted is returned.
  absl::StatusOr<void*> Allocate(size_t bytes);

  // Returns a block from Allocate to the cache. kInvalidArgument for a pointer this allocator
  // did not hand out (or freed twice).
  absl::Status Free(void* pointer);

  // Frees every cached block back to the backing (blocks in use stay).
  absl::Status ReleaseCached();

  // The size class `bytes` rounds up to.
  size_t RoundedSize(size_t bytes) const;

  const AllocatorStats& stats() const { return stats_; }
  void ResetPeak() { stats_.peak_in_use_bytes = stats_.in_use_bytes; }

 private:
  std::unique_ptr<MemoryBacking> backing_;
  CachingAllocatorOptions options_;
  std::multimap<size_t, void*> free_blocks_;  // size class -> cached block
  std::unordered_map<void*, size_t> in_use_;  // block -> its size class
  AllocatorStats stats_;
};

}  // namespace stagehand::ops::cuda

#endif  // STAGEHAND_OPS_CUDA_CACHING_ALLOCATOR_H_
