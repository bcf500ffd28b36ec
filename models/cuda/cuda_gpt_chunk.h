// CudaGptChunk: a GptChunk's layers on the GPU (the device twin of models/gpt_chunk.h): the
// same parameters in the same flat layout as fp32 master values and gradients, a bf16 copy for
// compute, and per microbatch the saved activations, with F, B (input gradients) and W (weight
// gradients) as separate calls. Every call only enqueues work on the chunk's stream; reading a
// result (Loss, the host copies) waits for it.
//
// It runs what ops/cuda has kernels for: GPT-2 layers (LayerNorm, causal multi-head attention,
// a dense GELU MLP, biases, learned positions, a tied or untied head) at a fixed sequence
// length. CheckCudaChunkSupport (cuda_support.h) says which models those are. Not a
// scheduler, not an optimizer (runtime/train/cuda_stage_work.h), not thread-safe.
#ifndef STAGEHAND_MODELS_CUDA_CUDA_GPT_CHUNK_H_
#define STAGEHAND_MODELS_CUDA_CUDA_GPT_CHUNK_H_

#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "models/gpt_chunk.h"
#include "ops/cuda/caching_allocator.h"
#include "ops/cuda/launch.h"
#include "ops/cuda/matmul.h"

namespace stagehand::models::cuda {

using ops::cuda::bf16;

class CudaGptChunk {
 public:
  // The device twin of `host` (its config, spec, options and parameter layout; values are
  // uploaded by UploadValues). Memory comes from `allocator`; GEMMs run through `matmul`; all
  // work on `stream`. None owned; all must outlive the chunk. Unimplemented for a model the
  // kernels do not cover (CheckCudaChunkSupport).
  static absl::StatusOr<std::unique_ptr<CudaGptChunk>> Create(
      const GptChunk<float>& host, ops::cuda::CachingAllocator* allocator,
      ops::cuda::Matmul* matmul, cudaStream_t stream);
  ~CudaGptChunk();
  CudaGptChunk(const CudaGptChunk&) = delete;
  CudaGptChunk& operator=(const CudaGptChunk&) = delete;

  // Sets the fp32 master values (and their bf16 copies) from `values` (host, size() floats in
  // the host chunk's layout).
  absl::Status UploadValues(const float* values);
  // Tensor by tensor between a host buffer in the host chunk's layout (size() floats) and a
  // device buffer in this chunk's (padded_size() floats: values(), grads(), the moments).
  // Enqueued on the stream; a download is complete once the stream is synchronised.
  absl::Status UploadFlat(float* device, const float* host);
  absl::Status DownloadFlat(float* host, const float* device);
  // Refreshes the bf16 copies from the fp32 master values (after an optimizer step that wrote
  // only the fp32 values) and the head's padded copy.
  absl::Status RefreshComputeCopies();

  // The step's M: the loss gradient of each microbatch is scaled by 1 / (M B T).
  absl::Status SetStepMicrobatches(int m);

  // F(mb). `tokens` and `targets` are host (B, T) ids (targets only read by the chunk with the
  // head); `input` the device (B, T, C) activation for a chunk without the embedding (copied).
  absl::Status Forward(int mb, const int32_t* tokens, const bf16* input, const int32_t* targets);
  // The device (B, T, C) output of F(mb) (no head); valid until mb is released.
  absl::StatusOr<const bf16*> Output(int mb) const;
  // The mean token loss of F(mb) (the head's chunk); waits for the stream.
  absl::StatusOr<double> Loss(int mb);
  // The device (B*T) per-token losses of F(mb) (the head's chunk), final once the stream
  // reaches this point; valid until mb is released. Does not wait.
  absl::StatusOr<const float*> DeviceLosses(int mb) const;
  // B(mb): `dout` the device (B, T, C) gradient of the output (null for the head's chunk).
  absl::Status BackwardInput(int mb, const bf16* dout);
  // The device (B, T, C) gradient of the input after B(mb) (not the embedding's chunk).
  absl::StatusOr<const bf16*> InputGrad(int mb) const;
  // W(mb): accumulates the weight gradients, then releases mb's memory to the allocator.
  // `part_done`, if given, is called after the kernels of each part of the pass are enqueued,
  // in order: the head (its weight's gradient, kept apart, and the final norm's) when the chunk
  // has it, then each layer from the last, as its MLP's tensors and then the rest of it (norms,
  // attention). The embedding's gradient is in no part (it comes last).
  absl::Status BackwardWeights(int mb, const std::function<void()>& part_done = nullptr);
  // Drops mb's activations without a backward.
  void Release(int mb);
  // Adds the head's gradient (kept apart over the step's microbatches, as GptChunk does) into
  // the head weight's gradient: wte's after its embedding gradient, or the tied copy's or
  // lm_head's. Call once before reading gradients; then zeroes the apart copy.
  absl::Status FoldHeadGradient();
  // The same on `stream` (a data-parallel stage's reduction stream, once the chunk's last
  // weight-gradient pass of the step has completed).
  absl::Status FoldHeadGradientOn(cudaStream_t stream);
  // Zeroes every gradient (and the head's apart copy).
  absl::Status ZeroGradients();

  // The flat buffers on the device: the host chunk's tensors in its order, each starting on a
  // 256-byte boundary (cuBLASLt's preferred alignment, the same for every cut of the model, so
  // that the same GEMM kernels run whatever chunk a tensor is in): padded_size() elements.
  float* values() { return values_; }
  float* grads() { return grads_; }
  bf16* compute_values() { return compute_; }
  int64_t size() const { return size_; }  // the host chunk's floats
  int64_t padded_size() const { return padded_size_; }
  const std::vector<ParamInfo>& infos() const { return infos_; }
  // Where infos()[t] starts in the device buffers.
  int64_t device_offset(size_t t) const { return device_offsets_[t]; }
  const ChunkSpec& spec() const { return spec_; }
  const GptConfig& config() const { return config_; }
  const ChunkOptions& options() const { return options_; }
  int inflight() const { return static_cast<int>(states_.size()); }
  cudaStream_t stream() const { return stream_; }

 private:
  struct LayerBuffers;
  struct MicrobatchState;
  CudaGptChunk(const GptChunk<float>& host, ops::cuda::CachingAllocator* allocator,
               ops::cuda::Matmul* matmul, cudaStream_t stream);
  absl::Status Allocate();
  // A device block of `bytes` from the allocator, remembered in `owned` for release.
  absl::StatusOr<void*> Take(size_t bytes, std::vector<void*>& owned);
  absl::StatusOr<std::unique_ptr<MicrobatchState>> NewState();
  void FreeState(MicrobatchState& st);
  absl::StatusOr<MicrobatchState*> Find(int mb, const char* what) const;
  int64_t Offset(const std::string& name) const;  // the tensor's offset; -1 when absent
  float* Grad(const std::string& name);
  const bf16* Compute(const std::string& name) const;
  const bf16* HeadWeight() const;  // the padded (Vp, C) bf16 copy of wte or lm_head.weight
  int64_t N() const { return int64_t{options_.micro_batch_size} * options_.seq_len; }
  // What each per-layer pass of layer i (local index) reads: sizes (N = B T, F the MLP's
  // width), the layer's name prefix ("h.3."), its input and its buffers.
  struct LayerView {
    int B = 0, T = 0, C = 0, NH = 0, N = 0, F = 0;
    std::string h;
    const bf16* x = nullptr;
    LayerBuffers* b = nullptr;
  };
  LayerView ViewOf(MicrobatchState& st, int i) const;
  absl::Status LayerForward(MicrobatchState& st, int i);
  absl::Status LayerBackwardInput(MicrobatchState& st, int i, const bf16* dout);
  absl::Status LayerBackwardWeights(MicrobatchState& st, int i,
                                    const std::function<void()>& part_done);

  GptConfig config_;
  ChunkSpec spec_;
  ChunkOptions options_;
  std::vector<ParamInfo> infos_;
  std::map<std::string, int64_t> offsets_;  // name -> device offset
  std::vector<int64_t> device_offsets_;     // by tensor
  int64_t size_ = 0;
  int64_t padded_size_ = 0;
  int vp_ = 0;  // the head's padded vocabulary (a multiple of 64)
  int step_microbatches_ = 1;
  ops::cuda::CachingAllocator* allocator_;
  ops::cuda::Matmul* matmul_;
  cudaStream_t stream_;
  std::vector<void*> owned_;  // the parameter buffers and scratch, freed with the chunk
  float* values_ = nullptr;
  float* grads_ = nullptr;
  bf16* compute_ = nullptr;
  bf16* head_weight_ = nullptr;  // (Vp, C), rows >= V zero
  float* head_grad_ = nullptr;   // (Vp, C): the head's gradient, apart until FoldHeadGradient
  void* attention_scratch_ = nullptr;
  bf16* scratch_c_ = nullptr;   // (N, C)
  bf16* scratch_4c_ = nullptr;  // (N, FFN)
  std::map<int, std::unique_ptr<MicrobatchState>> states_;
};

}  // namespace stagehand::models::cuda

#endif  // STAGEHAND_MODELS_CUDA_CUDA_GPT_CHUNK_H_
