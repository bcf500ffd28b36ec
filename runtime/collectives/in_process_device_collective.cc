// InProcessDeviceCollective: pointers exchanged on the host, sums on the device.
#include "runtime/collectives/in_process_device_collective.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "ops/cuda/cuda_status.h"
#include "ops/cuda/ordered_sum.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {

InProcessDeviceCollective::~InProcessDeviceCollective() {
  if (sum_ != nullptr) {
    cudaSetDevice(device_);
    cudaFree(sum_);
  }
}

absl::Status InProcessDeviceCollective::AllReduceSum(absl::Span<float> inout, cudaStream_t stream) {
  CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
  const int64_t n = static_cast<int64_t>(inout.size());
  if (n > sum_floats_) {  // the previous call's copy out of it was waited for below
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
    CUDA_RETURN_IF_ERROR(cudaFree(sum_));
    sum_ = nullptr;
    sum_floats_ = 0;
    CUDA_RETURN_IF_ERROR(cudaMalloc(reinterpret_cast<void**>(&sum_), sizeof(float) * n));
    sum_floats_ = n;
  }
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));  // this member's buffer is final
  const int64_t others = n - ShardLength(n, size(), member_);
  RETURN_IF_ERROR(group_->Exchange(
      member_, &inout, others * int64_t{sizeof(float)},
      [&](const std::vector<const void*>& all) -> absl::Status {
        std::vector<const float*> parts;
        for (size_t m = 0; m < all.size(); ++m) {
          const absl::Span<float>& theirs = *static_cast<const absl::Span<float>*>(all[m]);
          if (static_cast<int64_t>(theirs.size()) != n) {
            return absl::InvalidArgumentError(absl::StrCat("device all-reduce: member ", m,
                                                           " passes ", theirs.size(),
                                                           " elements, member ", member_, " ", n));
          }
          parts.push_back(theirs.data());
        }
        if (n == 0) return absl::OkStatus();
        RETURN_IF_ERROR(ops::cuda::SumInMemberOrder(parts, sum_, n, stream));
        // Every member's buffer is read before any member writes its own (the exchange's
        // closing barrier).
        CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
        return absl::OkStatus();
      }));
  // The all-gather's share of the modelled link (what a member of a real group receives).
  RETURN_IF_ERROR(
      group_->Exchange(member_, nullptr, others * int64_t{sizeof(float)},
                       [](const std::vector<const void*>&) { return absl::OkStatus(); }));
  if (n == 0) return absl::OkStatus();
  CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(inout.data(), sum_, sizeof(float) * n, cudaMemcpyDeviceToDevice, stream));
  return absl::OkStatus();
}

absl::Status InProcessDeviceCollective::ExchangeAndCopy(
    const void* mine, int64_t bytes,
    const std::function<absl::StatusOr<std::vector<Read>>(const std::vector<const void*>&)>& plan,
    cudaStream_t stream) {
  CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));  // this member's buffers are final
  return group_->Exchange(
      member_, mine, bytes, [&](const std::vector<const void*>& all) -> absl::Status {
        ASSIGN_OR_RETURN(const std::vector<Read> reads, plan(all));
        for (const Read& r : reads) {
          if (r.floats == 0 || r.from == r.to) continue;
          CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(r.to, r.from, sizeof(float) * r.floats,
                                               cudaMemcpyDeviceToDevice, stream));
        }
        // Every member's buffers are read before any member goes on (the closing barrier).
        CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
        return absl::OkStatus();
      });
}

absl::Status InProcessDeviceCollective::AllToAllV(absl::Span<const float> in,
                                                  const std::vector<int64_t>& send_counts,
                                                  absl::Span<float> out,
                                                  const std::vector<int64_t>& recv_counts,
                                                  cudaStream_t stream) {
  RETURN_IF_ERROR(CheckAllToAllCounts("send", send_counts, size(), in.size()));
  RETURN_IF_ERROR(CheckAllToAllCounts("receive", recv_counts, size(), out.size()));
  struct Deposit {
    const float* in;
    const std::vector<int64_t>* send_counts;
  } deposit{in.data(), &send_counts};
  const int64_t bytes = (static_cast<int64_t>(in.size()) - send_counts[member_]) * 4;
  return ExchangeAndCopy(
      &deposit, bytes,
      [&](const std::vector<const void*>& all) -> absl::StatusOr<std::vector<Read>> {
        std::vector<Read> reads;
        int64_t received = 0;
        for (int j = 0; j < size(); ++j) {
          const Deposit& theirs = *static_cast<const Deposit*>(all[j]);
          int64_t at = 0;  // where member j's elements for this member start in its buffer
          for (int k = 0; k < member_; ++k) at += (*theirs.send_counts)[k];
          if ((*theirs.send_counts)[member_] != recv_counts[j]) {
            return absl::InvalidArgumentError(absl::StrCat(
                "all-to-all: member ", j, " sends ", (*theirs.send_counts)[member_],
                " elements to member ", member_, ", which expects ", recv_counts[j]));
          }
          reads.push_back({theirs.in + at, out.data() + received, recv_counts[j]});
          received += recv_counts[j];
        }
        return reads;
      },
      stream);
}

absl::Status InProcessDeviceCollective::AllGatherV(absl::Span<const float> piece,
                                                   const std::vector<int64_t>& counts,
                                                   absl::Span<float> out, cudaStream_t stream) {
  ASSIGN_OR_RETURN(const std::vector<int64_t> offsets,
                   GatherOffsets(piece.size(), counts, out.size(), member_));
  const float* mine = piece.data();
  const int64_t bytes = (static_cast<int64_t>(out.size()) - counts[member_]) * 4;
  return ExchangeAndCopy(
      &mine, bytes,
      [&](const std::vector<const void*>& all) -> absl::StatusOr<std::vector<Read>> {
        std::vector<Read> reads;
        for (int j = 0; j < size(); ++j) {
          reads.push_back({*static_cast<const float* const*>(all[j]), out.data() + offsets[j],
                           counts[j]});
        }
        return reads;
      },
      stream);
}

}  // namespace stagehand::runtime
