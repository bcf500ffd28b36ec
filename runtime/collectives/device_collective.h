// What a GPU stage needs of its data-parallel group, on device buffers and a CUDA stream: the
// all-reduce of gradient buckets, in the documented member order (collective.h), so that every
// layout of the same grid gives the same bits. Two implementations: NcclCollective (a member
// per process, nccl_collective.h) and InProcessDeviceCollective (the replicas of one process on
// one GPU, in_process_device_collective.h).
#ifndef STAGEHAND_RUNTIME_COLLECTIVES_DEVICE_COLLECTIVE_H_
#define STAGEHAND_RUNTIME_COLLECTIVES_DEVICE_COLLECTIVE_H_

#include <cuda_runtime_api.h>

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
};

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_COLLECTIVES_DEVICE_COLLECTIVE_H_
