// CudaStageWork: a stage's chunks trained on a GPU (--device=cuda). Each host chunk (the
// model's parameters as evaluation, checkpoints and exports read them) gets a device twin
// (models/cuda/cuda_gpt_chunk.h); the stage's compute runs on one CUDA stream with its own
// cuBLASLt handle and caching allocator, and its optimizer is the multi-tensor AdamW of
// ops/cuda/adamw.h, fed the clip scale the stages agreed on (runtime/train/optimizer.h).
//
// The actor runtime's payloads are host float vectors, so an activation or a gradient that
// leaves the stage is converted and copied to the host (bf16 values, exactly representable as
// floats) and back on the receiving stage: results do not depend on how stages are placed, but
// every hand-off crosses PCIe. Actions with no host result (W, the first chunk's B) only
// enqueue their kernels. Not data, expert or sequence-length parallel: CheckCudaStageSupport
// lists what it refuses.
#ifndef STAGEHAND_RUNTIME_TRAIN_CUDA_STAGE_WORK_H_
#define STAGEHAND_RUNTIME_TRAIN_CUDA_STAGE_WORK_H_

#include <cuda_runtime_api.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "models/cuda/cuda_gpt_chunk.h"
#include "ops/cuda/adamw.h"
#include "ops/cuda/caching_allocator.h"
#include "ops/cuda/matmul.h"
#include "runtime/train/stage_work.h"

namespace stagehand::runtime {

struct CudaStageOptions {
  int device = 0;  // the CUDA device index
  // After every update, copy the master weights back into the host chunks, which evaluation,
  // checkpoints and exports read. False: they keep the initial weights (benchmarks).
  bool mirror_to_host = true;
};

class CudaStageWork : public StageWork {
 public:
  // `chunks` (global index -> host chunk, not owned) are this stage's; `num_chunks` the model's.
  // Their values (and, when `optimizer.states` holds them, their AdamW moments) are uploaded at
  // the first step, so that weights restored into the host chunks after this call are trained.
  static absl::StatusOr<std::unique_ptr<CudaStageWork>> Create(
      std::map<int, Chunk*> chunks, int num_chunks, const WindowSampler* sampler,
      int num_microbatches, OptimizerConfig optimizer, CudaStageOptions options);
  // Copies the moments back into `optimizer.states` (a pipeline rebuilt on the same host
  // chunks resumes from them), then frees the device memory.
  ~CudaStageWork() override;

  void BeginStep(int64_t step, int num_microbatches) override;
  absl::Status Forward(int chunk, int mb, const Payload* input, Payload* output,
                       double* loss) override;
  absl::Status BackwardInput(int chunk, int mb, const Payload* grad, Payload* input_grad) override;
  absl::Status BackwardWeights(int chunk, int mb) override;
  absl::Status Backward(int chunk, int mb, const Payload* grad, Payload* input_grad) override;
  TiedGradientMap TiedGradients() override;
  void SetTiedGradients(const TiedGradientMap& sums) override;
  std::map<int, std::vector<double>> SquaredNorms() override;
  void ApplyOptimizer(double clip_scale, int step) override;
  std::map<int, std::vector<std::string>> GradientNames() override;
  void DiscardGradients() override;
  double TakeDataSeconds() override;
  absl::Status ExportOptimizerState() override;
  int64_t OptimizerStateBytes() const override;
  // The first failure of a phase that returns no status (tied sums, norms, the update), which
  // the next F returns too; OK when there was none.
  absl::Status deferred_status() const { return status_; }
  // The stage's device memory: in use, peak and cached (ops/cuda/caching_allocator.h).
  ops::cuda::AllocatorStats MemoryStats() const { return allocator_->stats(); }

 private:
  CudaStageWork(std::map<int, Chunk*> chunks, int num_chunks, const WindowSampler* sampler,
                int num_microbatches, OptimizerConfig optimizer, CudaStageOptions options);
  absl::Status Init();
  absl::StatusOr<models::cuda::CudaGptChunk*> Get(int chunk) const;
  // Uploads the host values and moments (the first step).
  absl::Status Upload();
  // The head's gradient folded in, once per step (before norms or tied sums read gradients).
  absl::Status Fold();
  // A (B, T, C) host payload into the stage's bf16 staging buffer; the staging buffer (bf16)
  // into a host payload. Both on the stream; the download waits for it.
  absl::Status StageIn(const Payload& payload);
  absl::Status StageOut(const models::cuda::bf16* device, int64_t n, Payload* payload);
  // A failure of a phase that returns no status: kept, and returned by the next step's F.
  void Keep(const absl::Status& status);

  std::map<int, Chunk*> host_;
  int num_chunks_;
  const WindowSampler* sampler_;
  int num_microbatches_;
  OptimizerConfig optimizer_;
  CudaStageOptions options_;
  // Destroyed in reverse order: the chunks and optimizers before the allocator and the stream.
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<ops::cuda::Matmul> matmul_;
  std::unique_ptr<ops::cuda::CachingAllocator> allocator_;
  std::map<int, std::unique_ptr<models::cuda::CudaGptChunk>> chunks_;
  std::map<int, std::unique_ptr<ops::cuda::MultiTensorAdamW>> optimizers_;
  std::map<int, float*> m_, v_;            // device AdamW moments per chunk (the allocator's)
  float* staging_floats_ = nullptr;        // (B, T, C) fp32
  models::cuda::bf16* staging_ = nullptr;  // (B, T, C) bf16
  bool uploaded_ = false;
  bool folded_ = false;
  bool moments_written_ = false;  // an update ran: the moments on the device are the state
  int64_t step_ = 0;
  double data_seconds_ = 0;
  absl::Status status_;  // a failed optimizer phase (Keep)
};

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_TRAIN_CUDA_STAGE_WORK_H_
