// The caching allocator's size classes and free lists, on any MemoryBacking. Not a
// general-purpose heap: no splitting or coalescing of blocks (size classes bound the waste).
#include "ops/cuda/caching_allocator.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/util/status_macros.h"

namespace stagehand::ops::cuda {

CachingAllocator::CachingAllocator(std::unique_ptr<MemoryBacking> backing,
                                   CachingAllocatorOptions options)
    : backing_(std::move(backing)), options_(options) {
  if (options_.min_block_bytes == 0) options_.min_block_bytes = 1;
  if (options_.steps_per_doubling < 1) options_.steps_per_doubling = 1;
}

CachingAllocator::~CachingAllocator() { ReleaseCached().IgnoreError(); }

size_t CachingAllocator::RoundedSize(size_t bytes) const {
  const size_t unit = options_.min_block_bytes;
  const size_t units = bytes == 0 ? 1 : (bytes + unit - 1) / unit;
  if (units <= 1) return unit;
  // The power of two at or below units, and the step within [power, 2 * power).
  size_t power = 1;
  while (power * 2 <= units) power *= 2;
  const size_t steps = static_cast<size_t>(options_.steps_per_doubling);
  const size_t step = power >= steps ? power / steps : 1;
  const size_t rounded_units = (units + step - 1) / step * step;
  return rounded_units * unit;
}

absl::StatusOr<void*> CachingAllocator::Allocate(size_t bytes) {
  const size_t size = RoundedSize(bytes);
  void* block = nullptr;
  if (auto cached = free_blocks_.find(size); cached != free_blocks_.end()) {
    block = cached->second;
    free_blocks_.erase(cached);
    stats_.cached_bytes -= static_cast<int64_t>(size);
    ++stats_.cache_hits;
  } else {
    absl::StatusOr<void*> fresh = backing_->Allocate(size);
    if (!fresh.ok() && absl::IsResourceExhausted(fresh.status()) && !free_blocks_.empty()) {
      RETURN_IF_ERROR(ReleaseCached());
      fresh = backing_->Allocate(size);
    }
    if (!fresh.ok()) {
      return absl::Status(fresh.status().code(),
                          absl::StrCat("caching allocator: ", size, " bytes (", stats_.in_use_bytes,
                                       " in use): ", fresh.status().message()));
    }
    block = *fresh;
    ++stats_.backing_allocations;
    stats_.reserved_bytes += static_cast<int64_t>(size);
  }
  in_use_.emplace(block, size);
  stats_.in_use_bytes += static_cast<int64_t>(size);
  if (stats_.in_use_bytes > stats_.peak_in_use_bytes) {
    stats_.peak_in_use_bytes = stats_.in_use_bytes;
  }
  return block;
}

absl::Status CachingAllocator::Free(void* pointer) {
  auto found = in_use_.find(pointer);
  if (found == in_use_.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("caching allocator: Free of a pointer it did not hand out, or freed twice: ",
                     absl::StrFormat("%p", pointer)));
  }
  const size_t size = found->second;
  in_use_.erase(found);
  free_blocks_.emplace(size, pointer);
  stats_.in_use_bytes -= static_cast<int64_t>(size);
  stats_.cached_bytes += static_cast<int64_t>(size);
  return absl::OkStatus();
}

absl::Status CachingAllocator::ReleaseCached() {
  absl::Status first_error;
  for (auto& [size, block] : free_blocks_) {
    absl::Status freed = backing_->Free(block);
    if (!freed.ok() && first_error.ok()) first_error = freed;
    stats_.cached_bytes -= static_cast<int64_t>(size);
    stats_.reserved_bytes -= static_cast<int64_t>(size);
  }
  free_blocks_.clear();
  return first_error;
}

}  // namespace stagehand::ops::cuda
