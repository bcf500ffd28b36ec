// The ordered sum: a grid-stride loop, each thread adding its element's parts one after the
// other. Parts travel by value in the kernel's parameters, kMaxParts per launch.
#include "absl/strings/str_cat.h"
#include "ops/cuda/cuda_status.h"
#include "ops/cuda/launch.h"
#include "ops/cuda/ordered_sum.h"

namespace stagehand::ops::cuda {
namespace {

constexpr int kMaxParts = 32;

struct Parts {
  const float* p[kMaxParts];
  int count;
  bool continue_out;  // start from out[k] (a later launch of a long sum); else from p[0][k]
};

__global__ void OrderedSumKernel(Parts parts, float* out, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int first = 0;
    float sum;
    if (parts.continue_out) {
      sum = out[i];
    } else {
      sum = parts.p[0][i];
      first = 1;
    }
    for (int j = first; j < parts.count; ++j) sum = __fadd_rn(sum, parts.p[j][i]);
    out[i] = sum;
  }
}

}  // namespace

absl::Status SumInMemberOrder(const std::vector<const float*>& parts, float* out, int64_t n,
                              cudaStream_t stream) {
  if (parts.empty()) return absl::InvalidArgumentError("ordered sum of no parts");
  for (size_t j = 0; j < parts.size(); ++j) {
    if (parts[j] == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("ordered sum: part ", j, " is null"));
    }
    if (j > 0 && parts[j] == out) {
      return absl::InvalidArgumentError(
          absl::StrCat("ordered sum: the output aliases part ", j, " (only part 0 may be it)"));
    }
  }
  if (n <= 0) return absl::OkStatus();
  for (size_t begin = 0; begin < parts.size(); begin += kMaxParts) {
    Parts launch{};
    launch.count = static_cast<int>(std::min<size_t>(kMaxParts, parts.size() - begin));
    for (int j = 0; j < launch.count; ++j) launch.p[j] = parts[begin + j];
    launch.continue_out = begin > 0;
    OrderedSumKernel<<<GridFor(n), kBlockSize, 0, stream>>>(launch, out, n);
    CUDA_RETURN_IF_LAUNCH_ERROR();
  }
  return absl::OkStatus();
}

}  // namespace stagehand::ops::cuda
