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

}  // namespace stagehand::runtime
