// NcclCollective: grouped point-to-point calls for the data movement, the ordered-sum kernel
// for the arithmetic.
#include "runtime/collectives/nccl_collective.h"

#include <cstring>
#include <functional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "ops/cuda/cuda_status.h"
#include "ops/cuda/nccl_status.h"
#include "ops/cuda/ordered_sum.h"
#include "runtime/collectives/collective.h"
#include "runtime/collectives/store_exchange.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {
namespace {

// ncclGroupStart, `calls`, ncclGroupEnd: the group is always closed, and the first error wins.
absl::Status Grouped(const std::function<absl::Status()>& calls) {
  NCCL_RETURN_IF_ERROR(ncclGroupStart());
  const absl::Status status = calls();
  const absl::Status ended =
      ops::cuda::NcclStatus(ncclGroupEnd(), "ncclGroupEnd()", __FILE__, __LINE__);
  RETURN_IF_ERROR(status);
  return ended;
}

absl::Status CheckOptions(const NcclGroupOptions& o) {
  if (o.size < 1 || o.member < 0 || o.member >= o.size || o.device < 0) {
    return absl::InvalidArgumentError(absl::StrCat("nccl group '", o.name, "': member ", o.member,
                                                   " of ", o.size, " on device ", o.device));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<char>> NcclCollective::NewId() {
  ncclUniqueId id;
  NCCL_RETURN_IF_ERROR(ncclGetUniqueId(&id));
  return std::vector<char>(id.internal, id.internal + NCCL_UNIQUE_ID_BYTES);
}

absl::StatusOr<std::unique_ptr<NcclCollective>> NcclCollective::Connect(
    gloo::rendezvous::Store& store, const NcclGroupOptions& options) {
  RETURN_IF_ERROR(CheckOptions(options));
  ASSIGN_OR_RETURN(
      const std::vector<char> id,
      ShareFromMemberZero(store, absl::StrCat(options.name, "/nccl_unique_id"), options.member,
                          NCCL_UNIQUE_ID_BYTES, &NewId, options.timeout));
  return FromId(id, options);
}

absl::StatusOr<std::unique_ptr<NcclCollective>> NcclCollective::FromId(
    const std::vector<char>& id, const NcclGroupOptions& options) {
  RETURN_IF_ERROR(CheckOptions(options));
  if (id.size() != NCCL_UNIQUE_ID_BYTES) {
    return absl::InvalidArgumentError(absl::StrCat("nccl group '", options.name, "': an id of ",
                                                   id.size(), " bytes, expected ",
                                                   NCCL_UNIQUE_ID_BYTES));
  }
  ncclUniqueId unique;
  std::memcpy(unique.internal, id.data(), NCCL_UNIQUE_ID_BYTES);
  CUDA_RETURN_IF_ERROR(cudaSetDevice(options.device));
  ncclComm_t comm = nullptr;
  NCCL_RETURN_IF_ERROR(ncclCommInitRank(&comm, options.size, unique, options.member));
  std::unique_ptr<NcclCollective> collective(new NcclCollective(options, comm));
  CUDA_RETURN_IF_ERROR(
      cudaMalloc(reinterpret_cast<void**>(&collective->scalars_), sizeof(double) * options.size));
  CUDA_RETURN_IF_ERROR(cudaMallocHost(reinterpret_cast<void**>(&collective->host_scalars_),
                                      sizeof(double) * options.size));
  return collective;
}

NcclCollective::~NcclCollective() {
  cudaSetDevice(options_.device);
  if (comm_ != nullptr) {
    if (aborted_) {
      // ncclCommAbort already freed it.
    } else {
      ncclCommDestroy(comm_);
    }
  }
  cudaFree(scratch_);
  cudaFree(scalars_);
  cudaFreeHost(host_scalars_);
}

void NcclCollective::Abort() {
  if (aborted_ || comm_ == nullptr) return;
  aborted_ = true;
  ncclCommAbort(comm_);
}

absl::Status NcclCollective::Usable() const {
  if (aborted_) {
    return absl::FailedPreconditionError(
        absl::StrCat("nccl group '", options_.name, "' was aborted"));
  }
  CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
  return absl::OkStatus();
}

absl::StatusOr<float*> NcclCollective::Scratch(int64_t floats, cudaStream_t stream) {
  if (floats <= scratch_floats_) return scratch_;
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));  // earlier calls may still read it
  CUDA_RETURN_IF_ERROR(cudaFree(scratch_));
  scratch_ = nullptr;
  scratch_floats_ = 0;
  CUDA_RETURN_IF_ERROR(cudaMalloc(reinterpret_cast<void**>(&scratch_), sizeof(float) * floats));
  scratch_floats_ = floats;
  return scratch_;
}

absl::Status NcclCollective::AllToAllV(absl::Span<const float> in,
                                       const std::vector<int64_t>& send_counts,
                                       absl::Span<float> out,
                                       const std::vector<int64_t>& recv_counts,
                                       cudaStream_t stream) {
  RETURN_IF_ERROR(Usable());
  RETURN_IF_ERROR(CheckAllToAllCounts("send", send_counts, size(), in.size()));
  RETURN_IF_ERROR(CheckAllToAllCounts("receive", recv_counts, size(), out.size()));
  return Grouped([&]() -> absl::Status {
    int64_t sent = 0, received = 0;
    for (int j = 0; j < size(); ++j) {
      if (send_counts[j] > 0) {
        NCCL_RETURN_IF_ERROR(ncclSend(in.data() + sent, static_cast<size_t>(send_counts[j]),
                                      ncclFloat, j, comm_, stream));
      }
      if (recv_counts[j] > 0) {
        NCCL_RETURN_IF_ERROR(ncclRecv(out.data() + received, static_cast<size_t>(recv_counts[j]),
                                      ncclFloat, j, comm_, stream));
      }
      sent += send_counts[j];
      received += recv_counts[j];
    }
    return absl::OkStatus();
  });
}

absl::Status NcclCollective::ReduceScatterSum(absl::Span<const float> in, absl::Span<float> shard,
                                              cudaStream_t stream) {
  RETURN_IF_ERROR(Usable());
  const int64_t n = static_cast<int64_t>(in.size());
  const int64_t mine = ShardLength(n, size(), member());
  if (static_cast<int64_t>(shard.size()) != mine) {
    return absl::InvalidArgumentError(
        absl::StrCat("reduce-scatter in '", options_.name, "': member ", member(), " owns ", mine,
                     " of ", n, " elements, but its shard buffer has ", shard.size()));
  }
  // All-to-all of shards: this member receives every member's copy of its own shard, in
  // member order, one after another in the scratch buffer.
  ASSIGN_OR_RETURN(float* copies, Scratch(mine * size(), stream));
  std::vector<int64_t> send(size()), recv(size(), mine);
  for (int j = 0; j < size(); ++j) send[j] = ShardLength(n, size(), j);
  RETURN_IF_ERROR(AllToAllV(in, send, absl::MakeSpan(copies, mine * size()), recv, stream));
  if (mine == 0) return absl::OkStatus();  // it still sent the others their pieces
  std::vector<const float*> parts;
  for (int m = 0; m < size(); ++m) parts.push_back(copies + m * mine);
  return ops::cuda::SumInMemberOrder(parts, shard.data(), mine, stream);
}

absl::Status NcclCollective::AllGather(absl::Span<const float> shard, absl::Span<float> out,
                                       cudaStream_t stream) {
  RETURN_IF_ERROR(Usable());
  const int64_t n = static_cast<int64_t>(out.size());
  if (static_cast<int64_t>(shard.size()) != ShardLength(n, size(), member())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "all-gather in '", options_.name, "': member ", member(), " passes ", shard.size(),
        " elements, but owns ", ShardLength(n, size(), member()), " of ", n));
  }
  // Shards differ by one element when size does not divide n, so not ncclAllGather (equal
  // counts): each member sends its shard to every member and receives each member's in place.
  return Grouped([&]() -> absl::Status {
    for (int j = 0; j < size(); ++j) {
      if (!shard.empty()) {
        NCCL_RETURN_IF_ERROR(ncclSend(shard.data(), shard.size(), ncclFloat, j, comm_, stream));
      }
      const int64_t length = ShardLength(n, size(), j);
      if (length > 0) {
        NCCL_RETURN_IF_ERROR(ncclRecv(out.data() + ShardBegin(n, size(), j),
                                      static_cast<size_t>(length), ncclFloat, j, comm_, stream));
      }
    }
    return absl::OkStatus();
  });
}

absl::Status NcclCollective::AllGatherV(absl::Span<const float> piece,
                                        const std::vector<int64_t>& counts, absl::Span<float> out,
                                        cudaStream_t stream) {
  RETURN_IF_ERROR(Usable());
  ASSIGN_OR_RETURN(const std::vector<int64_t> offsets,
                   GatherOffsets(piece.size(), counts, out.size(), member()));
  float* own = out.data() + offsets[member()];
  return Grouped([&]() -> absl::Status {
    for (int j = 0; j < size(); ++j) {
      if (j == member() && piece.data() == own) continue;  // already in place
      if (!piece.empty()) {
        NCCL_RETURN_IF_ERROR(ncclSend(piece.data(), piece.size(), ncclFloat, j, comm_, stream));
      }
      if (counts[j] > 0) {
        NCCL_RETURN_IF_ERROR(ncclRecv(out.data() + offsets[j], static_cast<size_t>(counts[j]),
                                      ncclFloat, j, comm_, stream));
      }
    }
    return absl::OkStatus();
  });
}

absl::Status NcclCollective::AllReduceSum(absl::Span<float> inout, cudaStream_t stream) {
  RETURN_IF_ERROR(Usable());
  const int64_t n = static_cast<int64_t>(inout.size());
  const int64_t mine = ShardLength(n, size(), member());
  // The copies, then this member's summed shard, in one scratch buffer (reserved whole first, so
  // the reduce-scatter does not move it).
  ASSIGN_OR_RETURN(float* scratch, Scratch(mine * (size() + 1), stream));
  const absl::Span<float> shard = absl::MakeSpan(scratch + mine * size(), mine);
  RETURN_IF_ERROR(ReduceScatterSum(inout, shard, stream));
  return AllGather(shard, inout, stream);
}

absl::Status NcclCollective::AllGatherScalar(double value, std::vector<double>* values,
                                             cudaStream_t stream) {
  RETURN_IF_ERROR(Usable());
  host_scalars_[member()] = value;
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(scalars_ + member(), host_scalars_ + member(),
                                       sizeof(double), cudaMemcpyHostToDevice, stream));
  // In place: this member's value already sits at its slot of the receive buffer.
  NCCL_RETURN_IF_ERROR(ncclAllGather(scalars_ + member(), scalars_, 1, ncclDouble, comm_, stream));
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host_scalars_, scalars_, sizeof(double) * size(),
                                       cudaMemcpyDeviceToHost, stream));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  values->assign(host_scalars_, host_scalars_ + size());
  return absl::OkStatus();
}

}  // namespace stagehand::runtime
