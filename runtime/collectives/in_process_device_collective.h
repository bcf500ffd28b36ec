// DeviceCollective for the replicas of one process on one GPU (`--dp=D --device=cuda`): the
// members are threads (each replica's reduction lane) meeting in an InProcessGroup, as the
// CPU's InProcessCollective; each reads every member's device buffer and sums them with
// ops::cuda::SumInMemberOrder. NCCL has no place here: it puts one rank per GPU. The link of
// --link_latency_us / --link_gbps is modelled as for the CPU's replicas (two exchanges, the
// reduce-scatter's bytes and the all-gather's).
#ifndef STAGEHAND_RUNTIME_COLLECTIVES_IN_PROCESS_DEVICE_COLLECTIVE_H_
#define STAGEHAND_RUNTIME_COLLECTIVES_IN_PROCESS_DEVICE_COLLECTIVE_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "runtime/collectives/device_collective.h"
#include "runtime/collectives/in_process_collective.h"

namespace stagehand::runtime {

class InProcessDeviceCollective : public DeviceCollective {
 public:
  // `group` is shared by the members and outlives them; `device` holds every member's buffers.
  InProcessDeviceCollective(InProcessGroup* group, int member, int device)
      : group_(group), member_(member), device_(device) {}
  ~InProcessDeviceCollective() override;
  InProcessDeviceCollective(const InProcessDeviceCollective&) = delete;
  InProcessDeviceCollective& operator=(const InProcessDeviceCollective&) = delete;

  int member() const override { return member_; }
  int size() const override { return group_->size(); }
  // Waits for `stream` first (this member's buffer is final), then for the sum: returns once
  // every member has read every buffer; the copy of the sum back into `inout` is enqueued.
  absl::Status AllReduceSum(absl::Span<float> inout, cudaStream_t stream) override;
  // Each member copies its share of every member's buffer into its own (device to device on
  // `stream`), all reads done before any member returns. Wait for `stream` first, as above.
  absl::Status AllToAllV(absl::Span<const float> in, const std::vector<int64_t>& send_counts,
                         absl::Span<float> out, const std::vector<int64_t>& recv_counts,
                         cudaStream_t stream) override;
  absl::Status AllGatherV(absl::Span<const float> piece, const std::vector<int64_t>& counts,
                          absl::Span<float> out, cudaStream_t stream) override;

 private:
  InProcessGroup* group_;
  int member_;
  int device_;
  // Copies `reads` (each member's source, this member's destination, floats) under one
  // exchange, every member reading the others' buffers only while all wait.
  struct Read {
    const float* from;
    float* to;
    int64_t floats;
  };
  absl::Status ExchangeAndCopy(const void* mine, int64_t bytes,
                               const std::function<absl::StatusOr<std::vector<Read>>(
                                   const std::vector<const void*>&)>& plan,
                               cudaStream_t stream);
  float* sum_ = nullptr;  // device, grown to the largest call
  int64_t sum_floats_ = 0;
};

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_COLLECTIVES_IN_PROCESS_DEVICE_COLLECTIVE_H_
