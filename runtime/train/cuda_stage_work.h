// CudaStageWork: a stage's chunks trained on a GPU (--device=cuda). Each host chunk (the
// model's parameters as evaluation, checkpoints and exports read them) gets a device twin
// (models/cuda/cuda_gpt_chunk.h); the stage's compute runs on one CUDA stream with its own
// cuBLASLt handle and caching allocator, and its optimizer is the multi-tensor AdamW of
// ops/cuda/adamw.h, fed the clip scale the stages agreed on (runtime/train/optimizer.h).
//
// Compute actions only enqueue (StageWork::CompletesLater): each is bracketed by two CUDA
// events, and a completion thread waits for the second, writes the action's host results and
// reports its device begin and end on the host's steady clock (re-anchored at each step's
// start). With the actor runtime's lane depth 2, the next action is enqueued while one runs, so
// the stream does not wait for the host between them. The optimizer phases return host values
// and wait for the stream, once a step.
//
// An activation or a gradient for another chunk goes through the process's DeviceHandoff when
// one is given (stages on one GPU: the message carries no floats); else through pinned host
// memory as a float payload (bf16 values, exact as floats) and back on the receiving stage,
// copied on the stage's copy stream (ordered with the compute stream by events), so that the
// compute stream goes on with the next action while a payload travels. The loss values leave
// the same way.
// Results do not depend on which.
//
// Data parallel (--dp, CudaDataParallel): replica d draws the step's global microbatches
// d x M .. d x M + M - 1 and scales its loss for D x M; each REDUCE_GRAD sums a bucket of a
// chunk's flat device gradient over the replicas on the stage's reduction stream, in member
// order (runtime/collectives/device_collective.h), while the compute stream goes on. Buckets
// start as the layers they hold finish in their chunk's last weight-gradient pass of the step
// (GradientParts): the pass reports each part once its kernels are enqueued and records an
// event after them, and the bucket's reduction stream waits for that event. --zero=1 (zero_stage
// 1): member d owns elements OwnedRange(padded size, D, d) of each chunk's flat device buffer
// (runtime/train/zero_shard.h) and holds AdamW moments only there; a bucket is reduce-scattered to
// its owners (the tied embedding's part gathered back whole for the cross-chunk tied sum), the
// norms are summed over the owners' pieces in member order, each member updates what it owns and
// the master weights are gathered back. Not expert or sequence-length parallel (launch refuses
// those flags).
#ifndef STAGEHAND_RUNTIME_TRAIN_CUDA_STAGE_WORK_H_
#define STAGEHAND_RUNTIME_TRAIN_CUDA_STAGE_WORK_H_

#include <cuda_runtime_api.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "models/cuda/cuda_gpt_chunk.h"
#include "ops/cuda/adamw.h"
#include "ops/cuda/caching_allocator.h"
#include "ops/cuda/matmul.h"
#include "runtime/collectives/collective.h"
#include "runtime/collectives/device_collective.h"
#include "runtime/train/grad_buckets.h"
#include "runtime/train/stage_work.h"
#include "runtime/train/zero_shard.h"

namespace stagehand::runtime {

// CUDA events reused rather than created per action (thread-safe: one thread takes, another
// may give back). Destroys every event it made.
class CudaEventPool {
 public:
  explicit CudaEventPool(unsigned int flags) : flags_(flags) {}
  ~CudaEventPool();
  CudaEventPool(const CudaEventPool&) = delete;
  CudaEventPool& operator=(const CudaEventPool&) = delete;
  absl::StatusOr<cudaEvent_t> Take();
  void GiveBack(cudaEvent_t event);  // null: nothing

 private:
  unsigned int flags_;
  std::mutex mu_;
  std::vector<cudaEvent_t> free_, all_;
};

// Activations and gradients handed between the stages of one process as device tensors: the
// tensor is copied into a buffer of the hand-off on the consumer's GPU, and an event recorded
// after the copy; the consumer's stream waits on that event and takes the buffer, which goes
// back once the consumer's action has completed. On one GPU the copy runs on the producer's
// stream; between two GPUs it is a cudaMemcpyPeerAsync on the producer's copy stream (which
// first waits for its compute stream), so the compute stream goes on. The message between
// their actors then carries no floats (it says the tensor is ready). Keyed by (step, run of
// the step, F or I, destination chunk, microbatch); a new run drops what an abandoned one
// left. Thread-safe: every stage's lane and completion thread use it.
class DeviceHandoff {
 public:
  struct Key {
    int64_t step = 0;
    int run = 0;
    bool gradient = false;  // an I / B's input gradient; else an F's activation
    int chunk = 0;          // the consumer's
    int microbatch = 0;
    auto Tuple() const { return std::make_tuple(step, run, gradient, chunk, microbatch); }
    bool operator<(const Key& o) const { return Tuple() < o.Tuple(); }
  };
  struct Tensor {
    models::cuda::bf16* data = nullptr;
    int64_t elements = 0;
    cudaEvent_t ready = nullptr;
    int device = 0;        // where `data` is (the consumer's GPU)
    int event_device = 0;  // where `ready` was made (the producer's GPU)
  };
  // `device`: the GPU of chunks not placed with SetChunkDevice.
  explicit DeviceHandoff(int device) : default_device_(device) {}
  ~DeviceHandoff();
  DeviceHandoff(const DeviceHandoff&) = delete;
  DeviceHandoff& operator=(const DeviceHandoff&) = delete;
  // The GPU of the stage holding `chunk` (where tensors for it go). Before the first Put.
  void SetChunkDevice(int chunk, int device);
  // Copies `elements` bf16 values at `source` (on GPU `source_device`, the calling thread's
  // current device) into a hand-off buffer on the consumer's GPU, after what `stream` has
  // enqueued, and records its event; between GPUs on `copy_stream`. InvalidArgument if `key`
  // is already held.
  absl::Status Put(const Key& key, const models::cuda::bf16* source, int64_t elements,
                   int source_device, cudaStream_t stream, cudaStream_t copy_stream);
  // The tensor put under `key` (FailedPrecondition naming it when there is none), its event
  // waited on by `stream`. Give it back once `stream` is done reading it.
  absl::StatusOr<Tensor> Take(const Key& key, cudaStream_t stream);
  void GiveBack(const Tensor& tensor);
  int held() const;  // tensors put and not taken

 private:
  // The allocator of `device` (made on first use), and its event pool; mu_ held.
  ops::cuda::CachingAllocator& AllocatorOf(int device);
  CudaEventPool& EventsOf(int device);
  int default_device_;
  mutable std::mutex mu_;
  std::map<int, int> chunk_device_;
  std::map<int, std::unique_ptr<ops::cuda::CachingAllocator>> allocators_;  // by device
  std::map<int, std::unique_ptr<CudaEventPool>> events_;                    // by device
  std::map<Key, Tensor> held_;
};

// This replica's seat in its stage's data-parallel group (--dp; one replica: the defaults).
struct CudaDataParallel {
  int replica = 0;
  int replicas = 1;
  Collective* group = nullptr;               // host values: every replica's microbatch losses
  DeviceCollective* device_group = nullptr;  // the gradient buckets; null: no reduction
  int zero_stage = 0;  // 1: ZeRO-1 over device_group (moments sharded); needs both groups
};

struct CudaStageOptions {
  int device = 0;  // the CUDA device index
  // After every update, copy the master weights back into the host chunks, which evaluation,
  // checkpoints and exports read. False: they keep the initial weights (benchmarks).
  bool mirror_to_host = true;
  // Shared by every stage of the process on `device` (not owned; null: activations and
  // gradients leave and enter through the host as float payloads).
  DeviceHandoff* handoff = nullptr;
  CudaDataParallel data_parallel;  // not owned
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
  bool CompletesLater() const override { return true; }
  void OnComplete(Completion done) override;
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
  std::map<int, int64_t> GradientFloats() const override;
  absl::Status ReduceGradients(const GradBucket& bucket) override;
  absl::Status GatherLosses(std::vector<double>* losses) override;
  void ReleaseExportedOptimizerState() override;
  // The parts of each chunk's weight-gradient pass (CudaGptChunk::BackwardWeights' order) in
  // the flat device buffer's coordinates, each tensor's padding with it; --dp only.
  GradPartLayout GradientParts() const override;
  void SetGradientProgress(GradientProgress progress) override;
  int64_t ActivationBytes(int chunk) const override;
  bool DeviceMemory(int64_t* in_use, int64_t* peak) const override;
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
  // The chunk's W (`fused` false) or its B's W half, reporting parts on the step's last.
  absl::Status EnqueueBackwardWeights(models::cuda::CudaGptChunk* c, int chunk, int mb);
  // The range of the head's weight (the tied embedding's copy, or lm_head) in a chunk that has
  // the head; empty otherwise. Its gradient is kept apart until folded.
  ElementRange HeadWeightRange(const models::cuda::CudaGptChunk& chunk) const;
  // ZeRO-1.
  bool Sharded() const {
    return options_.data_parallel.zero_stage == 1 && options_.data_parallel.device_group != nullptr;
  }
  // What this member owns of chunk `index`'s flat device buffer (all of it when not sharded).
  ElementRange Owned(int index) const;
  // The range of the tied embedding in `chunk` (its own or its tied copy) when the model ties it
  // across chunks; empty otherwise.
  ElementRange TiedRange(const models::cuda::CudaGptChunk& chunk) const;
  // ZeRO-1's exchanges over the device group on `stream`, `buffer` a chunk's flat device buffer
  // of n floats: the owned elements inside `range` get the member-ordered sum; every member gets
  // every owner's values inside `range`.
  absl::Status ReduceScatterToOwners(float* buffer, int64_t n, const ElementRange& range,
                                     cudaStream_t stream);
  absl::Status AllGatherFromOwners(float* buffer, int64_t n, const ElementRange& range,
                                   cudaStream_t stream);
  // Chunk `index`'s moments `owned` (what this member holds) into `host` (the host chunk's
  // layout), through a whole flat device buffer: with `gather`, every owner's piece (a
  // collective: every replica exports at once, for checkpoints); without, this member's pieces
  // and zeros elsewhere (the destructor, when the other replicas may be gone).
  absl::Status DownloadMoments(int index, const float* owned, float* host, bool gather);
  // `use` on a zeroed device buffer the size of chunk `index`'s flat buffer, then the stream
  // synchronised and the buffer freed.
  absl::Status ThroughWholeBuffer(int index, const std::function<absl::Status(float*)>& use);
  // The owned slice of the host's moments `host` (the host chunk's layout) into `owned`.
  absl::Status UploadOwnedMoments(int index, const float* host, float* owned);
  // An action on its way: its events, what its completion does on the host (results from
  // pinned memory into the caller's), and the pinned buffers to give back after.
  struct Enqueued {
    cudaEvent_t begin = nullptr, end = nullptr;
    // Its transfers on the copy stream: `copied` after the last device-to-host copy (the
    // completion waits for it too), `ordering` the events between the two streams.
    cudaEvent_t copied = nullptr;
    std::vector<cudaEvent_t> ordering;
    std::vector<std::function<void()>> finish;
    std::vector<void*> pinned;
    std::vector<void*> device;  // its staging buffers from the allocator, freed on the lane
    // Run when its buffers are given back (completed or abandoned): hand-off tensors it read.
    std::vector<std::function<void()>> release;
    int64_t anchor_ns = 0;  // the host time of anchor_ (this step's)
    Completion done;
  };
  // Starts an action: its begin event on the stream.
  absl::StatusOr<Enqueued> Begin();
  // Ends it (the end event), keeps it for OnComplete.
  absl::Status End(Enqueued action);
  // A (B, T, C) host payload into the stage's bf16 staging buffer: pinned memory, copied on
  // the copy stream into a buffer of the action, converted on the compute stream once there.
  absl::Status StageIn(const Payload& payload, Enqueued& action);
  // `n` bf16 device values to `payload`, written when the action completes: converted on the
  // compute stream into a buffer of the action, copied to pinned memory on the copy stream
  // while the compute stream goes on.
  absl::Status StageOut(const models::cuda::bf16* device, int64_t n, Payload* payload,
                        Enqueued& action);
  // `bytes` of the action's own device buffer `device` to pinned `host` on the copy stream,
  // after everything the compute stream has enqueued so far.
  absl::Status CopyOut(void* host, const void* device, size_t bytes, Enqueued& action);
  // A device buffer of `bytes` that lives until the action has completed.
  absl::StatusOr<void*> ActionBuffer(size_t bytes, Enqueued& action);
  // Frees what completed actions left for the lane (the allocator is the lane's only).
  void FreeCompletedBuffers();
  // The chunk's input from the hand-off (the stream waits for its producer), read in place by
  // the chunk (which copies it into its own state) and given back on the action's completion.
  absl::StatusOr<const models::cuda::bf16*> TakeInput(bool gradient, int chunk, int mb,
                                                      int64_t elements, Enqueued& action);
  // An output to the hand-off for its consumer (chunk + 1 for F, chunk - 1 for I).
  absl::Status PutOutput(bool gradient, int chunk, int mb, const models::cuda::bf16* device,
                         int64_t elements);
  // The I of `chunk` with its input gradient to `input_grad` (on completion), into `action`.
  absl::Status EnqueueBackwardInput(models::cuda::CudaGptChunk* c, int chunk, int mb,
                                    const Payload* grad, Payload* input_grad, Enqueued& action);
  // Pinned host memory and events, reused; thread-safe (the completion thread gives back).
  absl::StatusOr<void*> Pinned(size_t bytes);
  void GiveBack(Enqueued& action);
  // GiveBack for an action that will not complete (its call failed part-way): after the stream
  // has drained, so that nothing still reads its buffers.
  void Abandon(Enqueued& action);
  // The completion thread: waits for each action's end event in order, then completes it.
  void CompleteLoop();
  void StopCompletions();
  // A failure of a phase that returns no status: kept, and returned by the next step's F.
  void Keep(const absl::Status& status);
  // Makes this stage's GPU the calling thread's current device: every entry point does, since
  // lanes, the reduction lane and the driver's thread call in (several GPUs in one process).
  absl::Status UseDevice() const;

  std::map<int, Chunk*> host_;
  int num_chunks_;
  const WindowSampler* sampler_;
  int num_microbatches_;
  OptimizerConfig optimizer_;
  CudaStageOptions options_;
  // Destroyed in reverse order: the chunks and optimizers before the allocator and the stream.
  cudaStream_t stream_ = nullptr;
  cudaStream_t reduce_stream_ = nullptr;  // --dp: the REDUCE_GRAD collectives
  cudaStream_t copy_stream_ = nullptr;    // payloads between device and host
  std::unique_ptr<ops::cuda::Matmul> matmul_;
  std::unique_ptr<ops::cuda::CachingAllocator> allocator_;
  std::map<int, std::unique_ptr<models::cuda::CudaGptChunk>> chunks_;
  std::map<int, std::unique_ptr<ops::cuda::MultiTensorAdamW>> optimizers_;
  std::map<int, float*> m_, v_;  // device AdamW moments per chunk (the allocator's)
  // ZeRO-1: for each tensor the optimizer of a chunk updates (its owned pieces), the index of
  // the chunk's tensor it is part of; and the scratch of the reduce-scatters (reduction lane)
  // and of gathering moments (the optimizer's phases), cudaMalloc'd, grown as needed.
  std::map<int, std::vector<int>> piece_tensor_;
  // Per-layer buckets: the progress callback, the step's W passes per chunk (lane), and the
  // events after each reported part of the chunk's last pass (mu_: the reduction lane reads
  // them), given back at the next step; the chunks whose head gradient the reduction lane has
  // folded this step.
  GradientProgress progress_;
  std::map<int, int> weight_passes_;
  std::map<int, std::vector<cudaEvent_t>> part_events_;
  std::map<int, std::pair<int64_t, int>> folded_for_;  // chunk -> (step, run) folded
  float* scatter_scratch_ = nullptr;
  int64_t scatter_scratch_floats_ = 0;
  models::cuda::bf16* staging_ = nullptr;  // (B, T, C) bf16
  bool uploaded_ = false;
  bool folded_ = false;
  bool moments_written_ = false;  // an update ran: the moments on the device are the state
  int64_t step_ = 0;
  int step_microbatches_ = 0;  // this replica's M of the step
  int run_ = 0;                // runs of step_ begun before this one (a rerun of the step)
  double data_seconds_ = 0;
  absl::Status status_;  // a failed optimizer phase (Keep)
  // The anchor of device times: an event recorded at the step's start and the host time it
  // completed at.
  cudaEvent_t anchor_ = nullptr;
  int64_t anchor_ns_ = 0;
  std::optional<Enqueued> last_;  // the last action's, until OnComplete takes it
  std::mutex mu_;                 // guards what follows
  std::condition_variable cv_;
  std::deque<Enqueued> completions_;
  bool stopping_ = false;
  std::vector<std::pair<void*, size_t>> free_pinned_;
  std::vector<void*> all_pinned_;
  std::map<void*, size_t> pinned_bytes_;
  std::vector<void*> completed_buffers_;    // ActionBuffers of completed actions (mu_)
  // The allocator's in-use and peak bytes as of the last action enqueued (DeviceMemory).
  std::atomic<int64_t> device_in_use_{0}, device_peak_{0};
  CudaEventPool events_{cudaEventDefault};  // timed: an action's begin and end
  CudaEventPool ordering_events_{cudaEventDisableTiming};
  std::thread completer_;
};

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_TRAIN_CUDA_STAGE_WORK_H_
