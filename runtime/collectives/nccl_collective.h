// The GPU collectives: NCCL behind the same contracts as Collective (collective.h), on device
// buffers and a CUDA stream. The summation order is the one every Stagehand reduction keeps:
// a reduce-scatter is an all-to-all of the shards (grouped ncclSend / ncclRecv, NCCL's own
// transport, never a ring of ours) followed by ops::cuda::SumInMemberOrder, which adds the
// members' copies in ascending member order exactly as the host's SumInMemberOrder does; an
// all-reduce is that reduce-scatter and an all-gather. So a reduction over NCCL is bitwise the
// CPU one, whatever the number of processes. (ncclAllReduce's ring or tree order depends on the
// topology, which is why it is not used for gradients.)
//
// A group's ncclUniqueId is made by member 0 and reaches the others through a Gloo rendezvous
// store (runtime/collectives/store_exchange.h): in the cluster, the control plane's
// authenticated store, the same one Gloo's groups rendezvous through.
//
// Spans here wrap device memory (pointer and length; never read on the host). Calls enqueue on
// `stream` and return; the results are there once the stream reaches them. One stream at a time
// per collective (its scratch buffers are reused from call to call). Every member makes the same
// calls in the same order, as with Gloo.
#ifndef STAGEHAND_RUNTIME_COLLECTIVES_NCCL_COLLECTIVE_H_
#define STAGEHAND_RUNTIME_COLLECTIVES_NCCL_COLLECTIVE_H_

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/collectives/device_collective.h"

namespace gloo::rendezvous {
class Store;
}  // namespace gloo::rendezvous

namespace stagehand::runtime {

struct NcclGroupOptions {
  std::string name = "world";  // the store key of the group's id derives from it
  int member = 0;
  int size = 1;
  int device = 0;                            // the CUDA device of this member's buffers and streams
  std::chrono::milliseconds timeout{30000};  // for member 0's id to appear in the store
};

class NcclCollective : public DeviceCollective {
 public:
  // Joins the group: member 0 makes the id and sets it in `store`; every member reads it and
  // initialises its communicator, which blocks until all `size` members have. `store` must
  // outlive the call only.
  static absl::StatusOr<std::unique_ptr<NcclCollective>> Connect(gloo::rendezvous::Store& store,
                                                                 const NcclGroupOptions& options);
  // The same from an id the caller shared (NCCL_UNIQUE_ID_BYTES bytes).
  static absl::StatusOr<std::unique_ptr<NcclCollective>> FromId(const std::vector<char>& id,
                                                                const NcclGroupOptions& options);
  // A fresh id from ncclGetUniqueId (member 0's).
  static absl::StatusOr<std::vector<char>> NewId();
  // Destroys the communicator; the caller's streams must be done with it.
  ~NcclCollective() override;
  NcclCollective(const NcclCollective&) = delete;
  NcclCollective& operator=(const NcclCollective&) = delete;

  int member() const override { return options_.member; }
  int size() const override { return options_.size; }

  // As Collective::ReduceScatterSum: every member passes `in` (n floats); member m receives in
  // `shard` (ShardLength(n, size, m) floats) the member-ordered sum of its shard.
  absl::Status ReduceScatterSum(absl::Span<const float> in, absl::Span<float> shard,
                                cudaStream_t stream);
  // As Collective::AllGather: every member passes its shard; every member receives all of `out`.
  absl::Status AllGather(absl::Span<const float> shard, absl::Span<float> out, cudaStream_t stream);
  // ReduceScatterSum then AllGather: every member ends with the ordered sum in `inout`.
  absl::Status AllReduceSum(absl::Span<float> inout, cudaStream_t stream) override;
  // As Collective::AllToAllV (counts in floats, member order; they must agree pairwise).
  absl::Status AllToAllV(absl::Span<const float> in, const std::vector<int64_t>& send_counts,
                         absl::Span<float> out, const std::vector<int64_t>& recv_counts,
                         cudaStream_t stream) override;
  absl::Status AllGatherV(absl::Span<const float> piece, const std::vector<int64_t>& counts,
                          absl::Span<float> out, cudaStream_t stream) override;
  // Every member's `value` in member order; waits for `stream`.
  absl::Status AllGatherScalar(double value, std::vector<double>* values, cudaStream_t stream);
  // ncclCommAbort: what is in flight on this member ends, and every later call fails. For a
  // peer that died (NCCL calls do not time out by themselves).
  void Abort();

 private:
  NcclCollective(NcclGroupOptions options, ncclComm_t comm)
      : options_(std::move(options)), comm_(comm) {}
  absl::Status Usable() const;
  // Device scratch of at least `floats` floats (grown after `stream` has drained).
  absl::StatusOr<float*> Scratch(int64_t floats, cudaStream_t stream);

  NcclGroupOptions options_;
  ncclComm_t comm_ = nullptr;
  bool aborted_ = false;
  float* scratch_ = nullptr;  // the members' copies of this member's shard, then the shard
  int64_t scratch_floats_ = 0;
  double* scalars_ = nullptr;       // device: one double per member
  double* host_scalars_ = nullptr;  // pinned
};

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_COLLECTIVES_NCCL_COLLECTIVE_H_
