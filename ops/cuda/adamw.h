// Multi-tensor AdamW with global-norm gradient clipping on the GPU: fp32 master weights, fp32
// gradients and moments, and a bf16 copy of each updated weight for compute. The norm, the clip
// factor and the update stay on the device (three launches, no host synchronisation).
// Not a learning-rate schedule and not a distributed optimizer (shards' norms are combined by
// the caller, as on the CPU: ops/cpu/adamw.h).
#ifndef STAGEHAND_OPS_CUDA_ADAMW_H_
#define STAGEHAND_OPS_CUDA_ADAMW_H_

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ops/cpu/adamw.h"
#include "ops/cuda/launch.h"

namespace stagehand::ops::cuda {

// One parameter tensor: n elements, each pointer on the device. params_bf16 may be null.
struct AdamWTensor {
  float* params = nullptr;
  const float* grads = nullptr;
  float* m = nullptr;
  float* v = nullptr;
  bf16* params_bf16 = nullptr;
  int64_t n = 0;
  // Weight decay applies (matrices); false: the update skips it (biases, norms), as on the CPU.
  bool decay = true;
};

class MultiTensorAdamW {
 public:
  // Uploads the chunk table for `tensors` (fixed for the optimizer's life) and allocates the
  // per-chunk norm partials. kInvalidArgument for an empty list or a tensor with n <= 0.
  static absl::StatusOr<std::unique_ptr<MultiTensorAdamW>> Create(
      const std::vector<AdamWTensor>& tensors);
  ~MultiTensorAdamW();
  MultiTensorAdamW(const MultiTensorAdamW&) = delete;
  MultiTensorAdamW& operator=(const MultiTensorAdamW&) = delete;

  // Enqueues one step on stream: the global norm of all gradients (sum of squares in fp32 per
  // chunk, chunks added in double in a fixed order), the clip factor min(1, max_norm / norm)
  // (max_norm <= 0 disables clipping), and AdamW on every tensor with the clipped gradients.
  // step is 1-based. Deterministic: the same inputs give the same bits.
  absl::Status Step(const AdamWOptions& options, int step, double max_norm, cudaStream_t stream);

  // Enqueues AdamW on every tensor with gradients multiplied by `clip_scale`, a factor the
  // caller formed (a pipeline's stages combine their norms first: runtime/train/optimizer.h).
  absl::Status StepWithClipScale(const AdamWOptions& options, int step, double clip_scale,
                                 cudaStream_t stream);
  // Each tensor's sum of squared gradients, in tensor order: fp32 sums over fixed chunks of the
  // tensor, added in chunk order in double. Waits for `stream`. Deterministic.
  absl::StatusOr<std::vector<double>> TensorSquaredNorms(cudaStream_t stream);
  // The global gradient norm of the last Step (device memory, one float), e.g. for logging.
  const float* device_norm() const { return norm_; }

  struct Chunk;  // a slice of one tensor that one block handles (defined in adamw.cu)

 private:
  MultiTensorAdamW() = default;
  AdamWTensor* tensors_ = nullptr;  // device
  Chunk* chunks_ = nullptr;         // device
  float* partials_ = nullptr;       // device, one per chunk
  float* norm_ = nullptr;           // device: [0] the norm, [1] the clip factor
  int chunk_count_ = 0;
  std::vector<int> chunk_tensors_;  // host: the tensor of each chunk, in chunk order
  int tensor_count_ = 0;
};

}  // namespace stagehand::ops::cuda

#endif  // STAGEHAND_OPS_CUDA_ADAMW_H_
