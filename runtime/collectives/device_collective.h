// What a GPU stage needs of its data-parallel group, on device buffers and a CUDA stream: the
// all-reduce of gradient buckets, in the documented member order (collective.h), so that every
// layout of the same grid gives the same bits, and the data movement of ZeRO-1. Two implementations: NcclCollective (a member
// per process, nccl_collective.h) and InProcessDeviceCollective (the replicas of one process on
// one GPU, in_process_device_collective.h).
#ifndef STAGEHAND_RUNTIME_COLLECTIVES_DEVICE_COLLECTIVE_H_
#define STAGEHAND_RUNTIME_COLLECTIVES_DEVICE_COLLECTIVE_H_

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace stagehand::runtime {

class DeviceCollective {
 public:
  virtual ~DeviceCollective() = default;
  virtual int member() const = 0;
  virtual int size() const = 0;
  // Every member passes `inout` (device floats, the same length everywhere) and ends with the
  // member-ordered sum in it once `stream` has reached the end of what this call enqueued.
  virtual absl::Status AllReduceSum(absl::Span<float> inout, cudaStream_t stream) = 0;
  // As Collective::AllToAllV (counts in floats, member order; they must agree pairwise): the
  // data movement of ZeRO-1's reduce-scatter to owners (runtime/train/zero_shard.h).
  virtual absl::Status AllToAllV(absl::Span<const float> in,
                                 const std::vector<int64_t>& send_counts, absl::Span<float> out,
                                 const std::vector<int64_t>& recv_counts, cudaStream_t stream) = 0;
  // Every member sends its `piece` (counts[member] floats) to every member; `out` receives the
  // members' pieces in member order (counts[j] from member j, one after another). `piece` may
  // already sit at its place in `out` (the gather of owned values back into the whole buffer):
  // then it is not copied onto itself.
  virtual absl::Status AllGatherV(absl::Span<const float> piece, const std::vector<int64_t>& counts,
                                  absl::Span<float> out, cudaStream_t stream) = 0;
};

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_COLLECTIVES_DEVICE_COLLECTIVE_H_
