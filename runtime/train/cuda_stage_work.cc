// CudaStageWork: the StageWork phases on a CUDA stream (see the header for the staging of
// payloads through the host).
#include "runtime/train/cuda_stage_work.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "models/cuda/cuda_support.h"
#include "ops/cuda/convert.h"
#include "ops/cuda/cuda_malloc_backing.h"
#include "ops/cuda/cuda_status.h"
#include "ops/cuda/ordered_sum.h"
#include "runtime/trace/recorder.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {

namespace oc = ::stagehand::ops::cuda;

namespace {

// Where tensor `name` of `chunk` lies in its flat device buffer; empty when it has none.
ElementRange DeviceRangeOf(const models::cuda::CudaGptChunk& chunk, const std::string& name) {
  for (size_t k = 0; k < chunk.infos().size(); ++k) {
    if (chunk.infos()[k].name != name) continue;
    const int64_t at = chunk.device_offset(k);
    return {at, at + chunk.infos()[k].size};
  }
  return {};
}

}  // namespace

CudaEventPool::~CudaEventPool() {
  for (cudaEvent_t event : all_) cudaEventDestroy(event);
}

absl::StatusOr<cudaEvent_t> CudaEventPool::Take() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!free_.empty()) {
      cudaEvent_t event = free_.back();
      free_.pop_back();
      return event;
    }
  }
  cudaEvent_t event = nullptr;
  CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&event, flags_));
  std::lock_guard<std::mutex> lock(mu_);
  all_.push_back(event);
  return event;
}

void CudaEventPool::GiveBack(cudaEvent_t event) {
  if (event == nullptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  free_.push_back(event);
}

DeviceHandoff::~DeviceHandoff() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [key, tensor] : held_) AllocatorOf(tensor.device).Free(tensor.data).IgnoreError();
  held_.clear();
  int current = 0;
  cudaGetDevice(&current);
  for (auto& [device, allocator] : allocators_) {  // cudaFree on each allocator's own GPU
    cudaSetDevice(device);
    allocator.reset();
  }
  cudaSetDevice(current);
}

void DeviceHandoff::SetChunkDevice(int chunk, int device) {
  std::lock_guard<std::mutex> lock(mu_);
  chunk_device_[chunk] = device;
}

oc::CachingAllocator& DeviceHandoff::AllocatorOf(int device) {
  std::unique_ptr<oc::CachingAllocator>& allocator = allocators_[device];
  if (allocator == nullptr) {
    allocator = std::make_unique<oc::CachingAllocator>(std::make_unique<oc::CudaMallocBacking>(),
                                                       oc::CachingAllocatorOptions{});
  }
  return *allocator;
}

CudaEventPool& DeviceHandoff::EventsOf(int device) {
  std::unique_ptr<CudaEventPool>& pool = events_[device];
  if (pool == nullptr) pool = std::make_unique<CudaEventPool>(cudaEventDisableTiming);
  return *pool;
}

absl::Status DeviceHandoff::Put(const Key& key, const models::cuda::bf16* source, int64_t elements,
                                int source_device, cudaStream_t stream, cudaStream_t copy_stream) {
  std::lock_guard<std::mutex> lock(mu_);
  // What an abandoned run of a step left (never taken): its producers' streams are long done.
  for (auto it = held_.begin(); it != held_.end();) {
    if (std::make_tuple(it->first.step, it->first.run) < std::make_tuple(key.step, key.run)) {
      AllocatorOf(it->second.device).Free(it->second.data).IgnoreError();
      EventsOf(it->second.event_device).GiveBack(it->second.ready);
      it = held_.erase(it);
    } else {
      ++it;
    }
  }
  if (held_.count(key) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "device hand-off of ", key.gradient ? "the gradient for I" : "the activation for F", " c",
        key.chunk, " mb", key.microbatch, " of step ", key.step, " put twice"));
  }
  const auto placed = chunk_device_.find(key.chunk);
  const int device = placed == chunk_device_.end() ? default_device_ : placed->second;
  const size_t bytes = elements * sizeof(models::cuda::bf16);
  // The buffer on the consumer's GPU (its allocator allocates on the current device).
  CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  absl::StatusOr<void*> block = AllocatorOf(device).Allocate(bytes);
  CUDA_RETURN_IF_ERROR(cudaSetDevice(source_device));
  if (!block.ok()) return block.status();
  CudaEventPool& events = EventsOf(source_device);  // recorded on the producer's streams
  absl::StatusOr<cudaEvent_t> ready = events.Take();
  if (!ready.ok()) {
    AllocatorOf(device).Free(*block).IgnoreError();
    return ready.status();
  }
  const Tensor tensor{static_cast<models::cuda::bf16*>(*block), elements, *ready, device,
                      source_device};
  absl::Status s;
  if (device == source_device) {
    s = oc::CudaStatus(
        cudaMemcpyAsync(tensor.data, source, bytes, cudaMemcpyDeviceToDevice, stream),
        "cudaMemcpyAsync", __FILE__, __LINE__);
    if (s.ok()) {
      s = oc::CudaStatus(cudaEventRecord(tensor.ready, stream), "cudaEventRecord", __FILE__,
                         __LINE__);
    }
  } else {
    // Between GPUs, on the producer's copy stream once its compute stream has the tensor.
    absl::StatusOr<cudaEvent_t> computed = events.Take();
    s = computed.status();
    if (s.ok()) {
      s = oc::CudaStatus(cudaEventRecord(*computed, stream), "cudaEventRecord", __FILE__, __LINE__);
      if (s.ok()) {
        s = oc::CudaStatus(cudaStreamWaitEvent(copy_stream, *computed, 0), "cudaStreamWaitEvent",
                           __FILE__, __LINE__);
      }
      events.GiveBack(*computed);  // the wait is bound to this record already
    }
    if (s.ok()) {
      s = oc::CudaStatus(
          cudaMemcpyPeerAsync(tensor.data, device, source, source_device, bytes, copy_stream),
          "cudaMemcpyPeerAsync", __FILE__, __LINE__);
    }
    if (s.ok()) {
      s = oc::CudaStatus(cudaEventRecord(tensor.ready, copy_stream), "cudaEventRecord", __FILE__,
                         __LINE__);
    }
  }
  if (!s.ok()) {
    cudaStreamSynchronize(stream);
    cudaStreamSynchronize(copy_stream);
    AllocatorOf(device).Free(tensor.data).IgnoreError();
    events.GiveBack(tensor.ready);
    return s;
  }
  held_[key] = tensor;
  return absl::OkStatus();
}

absl::StatusOr<DeviceHandoff::Tensor> DeviceHandoff::Take(const Key& key, cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = held_.find(key);
  if (it == held_.end()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no device hand-off of ", key.gradient ? "the gradient for I" : "the activation for F",
        " c", key.chunk, " mb", key.microbatch, " of step ", key.step,
        ": its producer put none (or another run's)"));
  }
  Tensor tensor = it->second;
  held_.erase(it);
  // The wait binds to the event's record now (a wait on another GPU's event is allowed): the
  // event may be recorded again after this.
  CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream, tensor.ready, 0));
  EventsOf(tensor.event_device).GiveBack(tensor.ready);
  tensor.ready = nullptr;
  return tensor;
}

void DeviceHandoff::GiveBack(const Tensor& tensor) {
  std::lock_guard<std::mutex> lock(mu_);
  AllocatorOf(tensor.device).Free(tensor.data).IgnoreError();
}

int DeviceHandoff::held() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(held_.size());
}

CudaStageWork::CudaStageWork(std::map<int, Chunk*> chunks, int num_chunks,
                             const WindowSampler* sampler, int num_microbatches,
                             OptimizerConfig optimizer, CudaStageOptions options)
    : host_(std::move(chunks)),
      num_chunks_(num_chunks),
      sampler_(sampler),
      num_microbatches_(num_microbatches),
      optimizer_(optimizer),
      options_(options) {
  if (optimizer_.states != nullptr && static_cast<int>(optimizer_.states->size()) < num_chunks) {
    optimizer_.states->resize(num_chunks);
  }
}

absl::StatusOr<std::unique_ptr<CudaStageWork>> CudaStageWork::Create(
    std::map<int, Chunk*> chunks, int num_chunks, const WindowSampler* sampler,
    int num_microbatches, OptimizerConfig optimizer, CudaStageOptions options) {
  if (sampler == nullptr) return absl::InvalidArgumentError("CudaStageWork: no sampler");
  if (sampler->variable_lengths()) {
    return absl::UnimplementedError(
        "--device=cuda trains fixed-length microbatches only (no --seq_len_policy=variable yet)");
  }
  if (sampler->has_documents()) {
    return absl::UnimplementedError(
        "--device=cuda has no packed-document attention yet (no --packing=documents)");
  }
  std::unique_ptr<CudaStageWork> work(new CudaStageWork(std::move(chunks), num_chunks, sampler,
                                                        num_microbatches, optimizer, options));
  RETURN_IF_ERROR(work->Init());
  return work;
}

absl::Status CudaStageWork::Init() {
  CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
  CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
  if (options_.data_parallel.device_group != nullptr) {
    CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&reduce_stream_, cudaStreamNonBlocking));
  }
  CUDA_RETURN_IF_ERROR(cudaEventCreate(&anchor_));
  completer_ = std::thread([this] { CompleteLoop(); });
  ASSIGN_OR_RETURN(matmul_, oc::Matmul::Create());
  allocator_ = std::make_unique<oc::CachingAllocator>(std::make_unique<oc::CudaMallocBacking>(),
                                                      oc::CachingAllocatorOptions{});
  int64_t staging = 0;
  for (const auto& [index, host] : host_) {
    ASSIGN_OR_RETURN(
        std::unique_ptr<models::cuda::CudaGptChunk> chunk,
        models::cuda::CudaGptChunk::Create(*host, allocator_.get(), matmul_.get(), stream_));
    // The moments of what this member owns (all of the chunk without ZeRO-1), laid out as the
    // flat buffer's elements [owned.begin, owned.end).
    const ElementRange owned =
        Sharded() ? OwnedRange(chunk->padded_size(), options_.data_parallel.replicas,
                               options_.data_parallel.replica)
                  : ElementRange{0, chunk->padded_size()};
    const int64_t n = std::max<int64_t>(owned.size(), 1);
    ASSIGN_OR_RETURN(void* m, allocator_->Allocate(n * sizeof(float)));
    ASSIGN_OR_RETURN(void* v, allocator_->Allocate(n * sizeof(float)));
    m_[index] = static_cast<float*>(m);
    v_[index] = static_cast<float*>(v);
    CUDA_RETURN_IF_ERROR(cudaMemsetAsync(m, 0, n * sizeof(float), stream_));
    CUDA_RETURN_IF_ERROR(cudaMemsetAsync(v, 0, n * sizeof(float), stream_));
    // Each tensor's owned piece (AdamW is elementwise: a piece is updated as its whole is).
    std::vector<oc::AdamWTensor> tensors;
    std::vector<int>& piece_tensor = piece_tensor_[index];
    for (size_t k = 0; k < chunk->infos().size(); ++k) {
      const int64_t at = chunk->device_offset(k);
      const ElementRange piece = Intersect({at, at + chunk->infos()[k].size}, owned);
      if (piece.size() == 0) continue;
      oc::AdamWTensor t;
      t.params = chunk->values() + piece.begin;
      t.grads = chunk->grads() + piece.begin;
      t.m = m_[index] + (piece.begin - owned.begin);
      t.v = v_[index] + (piece.begin - owned.begin);
      t.n = piece.size();
      t.decay = chunk->infos()[k].weight_decay;  // matrices only, as ApplyAdamW on the CPU
      tensors.push_back(t);
      piece_tensor.push_back(static_cast<int>(k));
    }
    if (!tensors.empty()) {
      ASSIGN_OR_RETURN(optimizers_[index], oc::MultiTensorAdamW::Create(tensors));
    }
    staging = std::max<int64_t>(staging, int64_t{host->options().micro_batch_size} *
                                             host->options().seq_len * host->config().d_model);
    chunks_[index] = std::move(chunk);
  }
  ASSIGN_OR_RETURN(void* halves, allocator_->Allocate(std::max<int64_t>(staging, 1) * 2));
  staging_ = static_cast<models::cuda::bf16*>(halves);
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

CudaStageWork::~CudaStageWork() {
  StopCompletions();  // runs every queued completion first
  if (stream_ == nullptr) return;
  cudaSetDevice(options_.device);
  // The moments back into the host states, which a pipeline rebuilt on the same chunks resumes
  // from. ZeRO-1 cannot gather here (the other replicas may be gone): each replica keeps its
  // own states, so its owned pieces are what it takes back.
  if (moments_written_ && optimizer_.states != nullptr && Sharded()) {
    for (auto& [index, chunk] : chunks_) {
      OptimizerState& state = (*optimizer_.states)[index];
      state.m.assign(chunk->size(), 0.0f);
      state.v.assign(chunk->size(), 0.0f);
      DownloadMoments(index, m_[index], state.m.data(), /*gather=*/false).IgnoreError();
      DownloadMoments(index, v_[index], state.v.data(), /*gather=*/false).IgnoreError();
    }
  } else if (moments_written_ && optimizer_.states != nullptr) {
    ExportOptimizerState().IgnoreError();
  }
  cudaStreamSynchronize(stream_);
  optimizers_.clear();
  chunks_.clear();
  for (auto& [index, m] : m_) allocator_->Free(m).IgnoreError();
  for (auto& [index, v] : v_) allocator_->Free(v).IgnoreError();
  if (copy_stream_ != nullptr) cudaStreamSynchronize(copy_stream_);
  if (last_) GiveBack(*last_);
  last_.reset();
  FreeCompletedBuffers();
  if (staging_ != nullptr) allocator_->Free(staging_).IgnoreError();
  allocator_.reset();
  matmul_.reset();
  for (void* buffer : all_pinned_) cudaFreeHost(buffer);
  if (anchor_ != nullptr) cudaEventDestroy(anchor_);
  if (scatter_scratch_ != nullptr) cudaFree(scatter_scratch_);
  if (reduce_stream_ != nullptr) cudaStreamDestroy(reduce_stream_);
  if (copy_stream_ != nullptr) cudaStreamDestroy(copy_stream_);
  cudaStreamDestroy(stream_);
}

absl::Status CudaStageWork::UseDevice() const {
  CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
  return absl::OkStatus();
}

void CudaStageWork::Keep(const absl::Status& status) {
  if (!status.ok() && status_.ok()) status_ = status;
}

absl::Status CudaStageWork::Upload() {
  for (auto& [index, chunk] : chunks_) {
    RETURN_IF_ERROR(chunk->UploadValues(host_.at(index)->params().values()));
    if (optimizer_.states == nullptr) continue;
    const OptimizerState& state = (*optimizer_.states)[index];
    const size_t n = static_cast<size_t>(chunk->size());
    if (state.m.size() != n || state.v.size() != n) continue;  // no moments yet
    RETURN_IF_ERROR(UploadOwnedMoments(index, state.m.data(), m_[index]));
    RETURN_IF_ERROR(UploadOwnedMoments(index, state.v.data(), v_[index]));
  }
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

void CudaStageWork::BeginStep(int64_t step, int num_microbatches) {
  Keep(UseDevice());
  if (!uploaded_ && status_.ok()) {
    Keep(Upload());
    uploaded_ = true;
  }
  run_ = step == step_ ? run_ + 1 : 0;
  step_ = step;
  folded_ = false;
  // The anchor of this step's device times (the stream is idle between steps).
  Keep(oc::CudaStatus(cudaEventRecord(anchor_, stream_), "cudaEventRecord", __FILE__, __LINE__));
  Keep(oc::CudaStatus(cudaEventSynchronize(anchor_), "cudaEventSynchronize", __FILE__, __LINE__));
  anchor_ns_ = trace::NowNanos();
  step_microbatches_ = num_microbatches;
  weight_passes_.clear();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [chunk, events] : part_events_) {
      for (cudaEvent_t event : events) ordering_events_.GiveBack(event);
    }
    part_events_.clear();
  }
  // The loss is the mean over every replica's microbatches: D x M of them.
  const int global = num_microbatches * options_.data_parallel.replicas;
  for (auto& [index, chunk] : chunks_) Keep(chunk->SetStepMicrobatches(global));
}

absl::StatusOr<models::cuda::CudaGptChunk*> CudaStageWork::Get(int chunk) const {
  auto it = chunks_.find(chunk);
  if (it == chunks_.end()) {
    return absl::InvalidArgumentError(absl::StrCat("chunk ", chunk, " is not held by this stage"));
  }
  return it->second.get();
}

absl::StatusOr<void*> CudaStageWork::Pinned(size_t bytes) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < free_pinned_.size(); ++i) {
      if (free_pinned_[i].second < bytes) continue;
      void* buffer = free_pinned_[i].first;
      free_pinned_.erase(free_pinned_.begin() + i);
      return buffer;
    }
  }
  void* buffer = nullptr;
  CUDA_RETURN_IF_ERROR(cudaMallocHost(&buffer, std::max<size_t>(bytes, 1)));
  std::lock_guard<std::mutex> lock(mu_);
  all_pinned_.push_back(buffer);
  pinned_bytes_[buffer] = std::max<size_t>(bytes, 1);
  return buffer;
}

void CudaStageWork::GiveBack(Enqueued& action) {
  for (const std::function<void()>& release : action.release) release();
  action.release.clear();
  std::lock_guard<std::mutex> lock(mu_);
  for (void* buffer : action.pinned) free_pinned_.emplace_back(buffer, pinned_bytes_[buffer]);
  completed_buffers_.insert(completed_buffers_.end(), action.device.begin(), action.device.end());
  events_.GiveBack(action.begin);
  events_.GiveBack(action.end);
  ordering_events_.GiveBack(action.copied);
  for (cudaEvent_t event : action.ordering) ordering_events_.GiveBack(event);
  action.pinned.clear();
  action.device.clear();
  action.ordering.clear();
  action.begin = action.end = action.copied = nullptr;
}

void CudaStageWork::FreeCompletedBuffers() {
  std::vector<void*> buffers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    buffers.swap(completed_buffers_);
  }
  for (void* buffer : buffers) allocator_->Free(buffer).IgnoreError();
}

absl::StatusOr<void*> CudaStageWork::ActionBuffer(size_t bytes, Enqueued& action) {
  ASSIGN_OR_RETURN(void* buffer, allocator_->Allocate(std::max<size_t>(bytes, 1)));
  action.device.push_back(buffer);
  return buffer;
}

absl::Status CudaStageWork::CopyOut(void* host, const void* device, size_t bytes,
                                    Enqueued& action) {
  ASSIGN_OR_RETURN(cudaEvent_t computed, ordering_events_.Take());
  action.ordering.push_back(computed);
  CUDA_RETURN_IF_ERROR(cudaEventRecord(computed, stream_));
  CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(copy_stream_, computed, 0));
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, copy_stream_));
  if (action.copied == nullptr) {
    ASSIGN_OR_RETURN(action.copied, ordering_events_.Take());
  }
  CUDA_RETURN_IF_ERROR(cudaEventRecord(action.copied, copy_stream_));  // after its last copy
  return absl::OkStatus();
}

void CudaStageWork::Abandon(Enqueued& action) {
  // Its copies may still read its buffers: let both streams finish before reusing them.
  cudaStreamSynchronize(stream_);
  cudaStreamSynchronize(copy_stream_);
  GiveBack(action);
}

absl::StatusOr<CudaStageWork::Enqueued> CudaStageWork::Begin() {
  if (last_) {  // an earlier call whose completion was never asked for
    Abandon(*last_);
    last_.reset();
  }
  FreeCompletedBuffers();
  Enqueued action;
  action.anchor_ns = anchor_ns_;
  ASSIGN_OR_RETURN(action.begin, events_.Take());
  absl::StatusOr<cudaEvent_t> end = events_.Take();
  if (!end.ok()) {
    GiveBack(action);
    return end.status();
  }
  action.end = *end;
  if (absl::Status s = oc::CudaStatus(cudaEventRecord(action.begin, stream_), "cudaEventRecord",
                                      __FILE__, __LINE__);
      !s.ok()) {
    GiveBack(action);
    return s;
  }
  return action;
}

absl::Status CudaStageWork::End(Enqueued action) {
  const oc::AllocatorStats stats = allocator_->stats();  // the lane's, as of this action
  device_in_use_.store(stats.in_use_bytes, std::memory_order_relaxed);
  device_peak_.store(stats.peak_in_use_bytes, std::memory_order_relaxed);
  if (absl::Status s = oc::CudaStatus(cudaEventRecord(action.end, stream_), "cudaEventRecord",
                                      __FILE__, __LINE__);
      !s.ok()) {
    Abandon(action);
    return s;
  }
  last_ = std::move(action);
  return absl::OkStatus();
}

void CudaStageWork::OnComplete(Completion done) {
  if (!last_) {  // nothing enqueued (not expected after an OK call): complete at once
    done(absl::OkStatus(), 0, 0);
    return;
  }
  Enqueued action = std::move(*last_);
  last_.reset();
  action.done = std::move(done);
  {
    std::lock_guard<std::mutex> lock(mu_);
    completions_.push_back(std::move(action));
  }
  cv_.notify_one();
}

void CudaStageWork::CompleteLoop() {
  cudaSetDevice(options_.device);
  for (;;) {
    Enqueued action;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !completions_.empty(); });
      if (completions_.empty()) return;
      action = std::move(completions_.front());
      completions_.pop_front();
    }
    // Waits on this thread only: the stream and the lane go on.
    absl::Status status = oc::CudaStatus(cudaEventSynchronize(action.end), "cudaEventSynchronize",
                                         __FILE__, __LINE__);
    if (status.ok() && action.copied != nullptr) {  // its results' copies to the host
      status = oc::CudaStatus(cudaEventSynchronize(action.copied), "cudaEventSynchronize", __FILE__,
                              __LINE__);
    }
    int64_t begin_ns = 0, end_ns = 0;
    if (status.ok()) {
      float begin_ms = 0, end_ms = 0;
      if (cudaEventElapsedTime(&begin_ms, anchor_, action.begin) == cudaSuccess &&
          cudaEventElapsedTime(&end_ms, anchor_, action.end) == cudaSuccess) {
        begin_ns = action.anchor_ns + static_cast<int64_t>(1e6 * begin_ms);
        end_ns = action.anchor_ns + static_cast<int64_t>(1e6 * end_ms);
      }
      for (const std::function<void()>& finish : action.finish) finish();
    }
    GiveBack(action);
    action.done(status, begin_ns, end_ns);
  }
}

void CudaStageWork::StopCompletions() {
  if (!completer_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  completer_.join();
}

absl::Status CudaStageWork::StageIn(const Payload& payload, Enqueued& action) {
  const int64_t n = static_cast<int64_t>(payload.size());
  const size_t bytes = n * sizeof(float);
  ASSIGN_OR_RETURN(void* pinned, Pinned(bytes));
  action.pinned.push_back(pinned);
  std::memcpy(pinned, payload.data(), bytes);
  ASSIGN_OR_RETURN(void* floats, ActionBuffer(bytes, action));
  CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(floats, pinned, bytes, cudaMemcpyHostToDevice, copy_stream_));
  ASSIGN_OR_RETURN(cudaEvent_t arrived, ordering_events_.Take());
  action.ordering.push_back(arrived);
  CUDA_RETURN_IF_ERROR(cudaEventRecord(arrived, copy_stream_));
  CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream_, arrived, 0));
  return oc::FloatToBf16(staging_, static_cast<const float*>(floats), n, stream_);
}

absl::Status CudaStageWork::StageOut(const models::cuda::bf16* device, int64_t n, Payload* payload,
                                     Enqueued& action) {
  const size_t bytes = n * sizeof(float);
  ASSIGN_OR_RETURN(void* floats, ActionBuffer(bytes, action));
  RETURN_IF_ERROR(oc::Bf16ToFloat(static_cast<float*>(floats), device, n, stream_));
  ASSIGN_OR_RETURN(void* pinned, Pinned(bytes));
  action.pinned.push_back(pinned);
  RETURN_IF_ERROR(CopyOut(pinned, floats, bytes, action));
  action.finish.push_back([pinned, n, payload] {
    const float* values = static_cast<const float*>(pinned);
    payload->assign(values, values + n);
  });
  return absl::OkStatus();
}

absl::StatusOr<const models::cuda::bf16*> CudaStageWork::TakeInput(bool gradient, int chunk, int mb,
                                                                   int64_t elements,
                                                                   Enqueued& action) {
  if (options_.handoff == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(gradient ? "I" : "F", " c", chunk, " mb", mb,
                                                   " of step ", step_, ": no input was given"));
  }
  DeviceHandoff* handoff = options_.handoff;
  ASSIGN_OR_RETURN(DeviceHandoff::Tensor tensor,
                   handoff->Take(DeviceHandoff::Key{step_, run_, gradient, chunk, mb}, stream_));
  action.release.push_back([handoff, tensor] { handoff->GiveBack(tensor); });
  if (tensor.elements != elements) {
    return absl::InvalidArgumentError(absl::StrCat(
        gradient ? "gradient for I" : "activation for F", " c", chunk, " mb", mb, " of step ",
        step_, ": the device hand-off holds ", tensor.elements, " values, expected ", elements));
  }
  return tensor.data;
}

absl::Status CudaStageWork::PutOutput(bool gradient, int chunk, int mb,
                                      const models::cuda::bf16* device, int64_t elements) {
  const int consumer = gradient ? chunk - 1 : chunk + 1;
  return options_.handoff->Put(DeviceHandoff::Key{step_, run_, gradient, consumer, mb}, device,
                               elements, options_.device, stream_, copy_stream_);
}

absl::Status CudaStageWork::Forward(int chunk, int mb, const Payload* input, Payload* output,
                                    double* loss) {
  RETURN_IF_ERROR(UseDevice());
  RETURN_IF_ERROR(status_);
  ASSIGN_OR_RETURN(models::cuda::CudaGptChunk * c, Get(chunk));
  const Chunk& host = *host_.at(chunk);
  const models::ChunkOptions& o = host.options();
  MicrobatchData data(o);
  const auto sample_start = std::chrono::steady_clock::now();
  data.Draw(*sampler_, step_, options_.data_parallel.replica * step_microbatches_ + mb);
  data_seconds_ +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - sample_start).count();
  const int64_t n = int64_t{o.micro_batch_size} * o.seq_len * host.config().d_model;
  // The input: floats from another process or from a stage without the hand-off, or the
  // device tensor its producer handed over (the message then carries none).
  const bool floats = input != nullptr && !input->empty();
  if (floats) {
    RETURN_IF_ERROR(CheckTensorRows("activation for F", step_, chunk, mb, input->size(),
                                    o.micro_batch_size, data.length(), host.config().d_model));
  }
  ASSIGN_OR_RETURN(Enqueued action, Begin());
  absl::Status s;
  const models::cuda::bf16* device_input = nullptr;  // the embedding's chunk has none
  if (floats) {
    s = StageIn(*input, action);
    device_input = staging_;
  } else if (!c->spec().has_embedding) {
    absl::StatusOr<const models::cuda::bf16*> taken =
        TakeInput(/*gradient=*/false, chunk, mb, n, action);
    s = taken.status();
    if (taken.ok()) device_input = *taken;
  }
  if (s.ok()) s = c->Forward(mb, data.tokens(), device_input, data.targets());
  if (s.ok() && c->spec().has_head) {  // the loss: the losses' mean, on completion
    const int64_t tokens = int64_t{o.micro_batch_size} * o.seq_len;
    absl::StatusOr<const float*> losses = c->DeviceLosses(mb);
    absl::StatusOr<void*> pinned =
        losses.ok() ? Pinned(tokens * sizeof(float)) : absl::StatusOr<void*>(losses.status());
    s = pinned.status();
    if (s.ok()) {
      // Into a buffer of the action first (the chunk's own may be reused once its W ran), then
      // to the host on the copy stream.
      action.pinned.push_back(*pinned);
      const size_t bytes = tokens * sizeof(float);
      absl::StatusOr<void*> own = ActionBuffer(bytes, action);
      s = own.status();
      if (s.ok()) {
        s = oc::CudaStatus(cudaMemcpyAsync(*own, *losses, bytes, cudaMemcpyDeviceToDevice, stream_),
                           "cudaMemcpyAsync", __FILE__, __LINE__);
      }
      if (s.ok()) s = CopyOut(*pinned, *own, bytes, action);
      action.finish.push_back([values = static_cast<const float*>(*pinned), tokens, loss] {
        double sum = 0;
        for (int64_t i = 0; i < tokens; ++i) sum += values[i];
        *loss = sum / static_cast<double>(tokens);
      });
    }
  } else if (s.ok()) {
    absl::StatusOr<const models::cuda::bf16*> out = c->Output(mb);
    if (!out.ok()) {
      s = out.status();
    } else if (options_.handoff != nullptr) {
      s = PutOutput(/*gradient=*/false, chunk, mb, *out, n);
      output->clear();
    } else {
      s = StageOut(*out, n, output, action);
    }
  }
  if (!s.ok()) {
    Abandon(action);
    return s;
  }
  return End(std::move(action));
}

absl::Status CudaStageWork::EnqueueBackwardInput(models::cuda::CudaGptChunk* c, int chunk, int mb,
                                                 const Payload* grad, Payload* input_grad,
                                                 Enqueued& action) {
  const Chunk& host = *host_.at(chunk);
  const models::ChunkOptions& o = host.options();
  const int64_t n = int64_t{o.micro_batch_size} * o.seq_len * host.config().d_model;
  const models::cuda::bf16* dout = nullptr;  // the head's chunk starts from its loss
  if (grad != nullptr && !grad->empty()) {
    RETURN_IF_ERROR(CheckTensorRows("gradient for I", step_, chunk, mb, grad->size(),
                                    o.micro_batch_size, o.seq_len, host.config().d_model));
    RETURN_IF_ERROR(StageIn(*grad, action));
    dout = staging_;
  } else if (!c->spec().has_head) {
    ASSIGN_OR_RETURN(dout, TakeInput(/*gradient=*/true, chunk, mb, n, action));
  }
  RETURN_IF_ERROR(c->BackwardInput(mb, dout));
  if (c->spec().has_embedding) return absl::OkStatus();
  ASSIGN_OR_RETURN(const models::cuda::bf16* g, c->InputGrad(mb));
  if (options_.handoff != nullptr) {
    input_grad->clear();
    return PutOutput(/*gradient=*/true, chunk, mb, g, n);
  }
  return StageOut(g, n, input_grad, action);
}

absl::Status CudaStageWork::BackwardInput(int chunk, int mb, const Payload* grad,
                                          Payload* input_grad) {
  RETURN_IF_ERROR(UseDevice());
  ASSIGN_OR_RETURN(models::cuda::CudaGptChunk * c, Get(chunk));
  ASSIGN_OR_RETURN(Enqueued action, Begin());
  if (absl::Status s = EnqueueBackwardInput(c, chunk, mb, grad, input_grad, action); !s.ok()) {
    Abandon(action);
    return s;
  }
  return End(std::move(action));
}

absl::Status CudaStageWork::EnqueueBackwardWeights(models::cuda::CudaGptChunk* c, int chunk,
                                                   int mb) {
  if (!progress_ || ++weight_passes_[chunk] != step_microbatches_) return c->BackwardWeights(mb);
  // The step's last pass of the chunk: an event after each part, then its report (which may
  // start a bucket's reduction, whose stream waits for that event).
  int done = 0;
  absl::Status recorded;
  return c->BackwardWeights(mb, [&] {
    absl::StatusOr<cudaEvent_t> event = ordering_events_.Take();
    if (event.ok()) {
      recorded =
          oc::CudaStatus(cudaEventRecord(*event, stream_), "cudaEventRecord", __FILE__, __LINE__);
      std::lock_guard<std::mutex> lock(mu_);
      part_events_[chunk].push_back(*event);
    } else if (recorded.ok()) {
      recorded = event.status();
    }
    Keep(recorded);
    progress_(chunk, ++done);
  });
}

absl::Status CudaStageWork::BackwardWeights(int chunk, int mb) {
  RETURN_IF_ERROR(UseDevice());
  ASSIGN_OR_RETURN(models::cuda::CudaGptChunk * c, Get(chunk));
  ASSIGN_OR_RETURN(Enqueued action, Begin());
  if (absl::Status s = EnqueueBackwardWeights(c, chunk, mb); !s.ok()) {
    Abandon(action);
    return s;
  }
  return End(std::move(action));
}

absl::Status CudaStageWork::Backward(int chunk, int mb, const Payload* grad, Payload* input_grad) {
  RETURN_IF_ERROR(UseDevice());
  ASSIGN_OR_RETURN(models::cuda::CudaGptChunk * c, Get(chunk));
  ASSIGN_OR_RETURN(Enqueued action, Begin());
  absl::Status s = EnqueueBackwardInput(c, chunk, mb, grad, input_grad, action);
  if (s.ok()) s = EnqueueBackwardWeights(c, chunk, mb);
  if (!s.ok()) {
    Abandon(action);
    return s;
  }
  return End(std::move(action));
}

absl::Status CudaStageWork::Fold() {
  if (folded_) return absl::OkStatus();
  folded_ = true;
  for (auto& [index, chunk] : chunks_) RETURN_IF_ERROR(chunk->FoldHeadGradient());
  return absl::OkStatus();
}

TiedGradientMap CudaStageWork::TiedGradients() {
  Keep(UseDevice());
  TiedGradientMap out;
  Keep(Fold());
  for (auto& [index, chunk] : chunks_) {
    const ElementRange tied = TiedRange(*chunk);
    if (tied.size() == 0) continue;
    Payload& grad = out[index]["wte"];
    grad.resize(tied.size());
    Keep(oc::CudaStatus(
        cudaMemcpyAsync(grad.data(), chunk->grads() + tied.begin, tied.size() * sizeof(float),
                        cudaMemcpyDeviceToHost, stream_),
        "cudaMemcpyAsync", __FILE__, __LINE__));
  }
  Keep(oc::CudaStatus(cudaStreamSynchronize(stream_), "cudaStreamSynchronize", __FILE__, __LINE__));
  return out;
}

void CudaStageWork::SetTiedGradients(const TiedGradientMap& sums) {
  Keep(UseDevice());
  for (const auto& [index, tensors] : sums) {
    auto it = chunks_.find(index);
    if (it == chunks_.end()) continue;
    for (const auto& [name, grad] : tensors) {
      for (size_t k = 0; k < it->second->infos().size(); ++k) {
        const models::ParamInfo& info = it->second->infos()[k];
        if (info.name != name) continue;
        if (static_cast<int64_t>(grad.size()) != info.size) {
          Keep(absl::InvalidArgumentError(absl::StrCat("tied gradient ", name, " of chunk ", index,
                                                       ": ", grad.size(), " floats, expected ",
                                                       info.size)));
          continue;
        }
        Keep(oc::CudaStatus(
            cudaMemcpyAsync(it->second->grads() + it->second->device_offset(k), grad.data(),
                            info.size * sizeof(float), cudaMemcpyHostToDevice, stream_),
            "cudaMemcpyAsync", __FILE__, __LINE__));
      }
    }
  }
  Keep(oc::CudaStatus(cudaStreamSynchronize(stream_), "cudaStreamSynchronize", __FILE__, __LINE__));
}

std::map<int, std::vector<double>> CudaStageWork::SquaredNorms() {
  Keep(UseDevice());
  std::map<int, std::vector<double>> out;
  Keep(Fold());
  for (auto& [index, chunk] : chunks_) {
    const std::vector<models::ParamInfo>& infos = chunk->infos();
    // Each tensor's squared norm over the pieces this member updates (all of them unsharded).
    std::vector<double> mine(infos.size(), 0.0);
    absl::Status status;
    if (auto it = optimizers_.find(index); it != optimizers_.end()) {
      absl::StatusOr<std::vector<double>> pieces = it->second->TensorSquaredNorms(stream_);
      status = pieces.status();
      for (size_t i = 0; pieces.ok() && i < pieces->size(); ++i) {
        mine[piece_tensor_[index][i]] += (*pieces)[i];
      }
    }
    // ZeRO-1: the owners' pieces summed in member order, the same on every replica.
    std::vector<double> whole = mine;
    if (status.ok() && Sharded()) {
      Collective& group = *options_.data_parallel.group;
      std::vector<double> all;
      status = AllGatherDoubles(group, mine, &all);
      for (size_t t = 0; status.ok() && t < whole.size(); ++t) {
        whole[t] = 0;
        for (int d = 0; d < group.size(); ++d) whole[t] += all[d * mine.size() + t];
      }
    }
    std::vector<double>& values = out[index];
    for (size_t t = 0; t < infos.size(); ++t) {
      if (infos[t].tied_copy) continue;  // counted once, by its owner
      // A failed read is a NaN norm: the driver refuses the step instead of applying it.
      values.push_back(status.ok() ? whole[t] : std::nan(""));
    }
    Keep(status);
  }
  return out;
}

void CudaStageWork::ApplyOptimizer(double clip_scale, int step) {
  Keep(UseDevice());
  ops::AdamWOptions options = optimizer_.adamw;
  options.learning_rate = LearningRateAt(optimizer_, step);
  for (auto& [index, chunk] : chunks_) {
    if (auto it = optimizers_.find(index); it != optimizers_.end()) {
      Keep(it->second->StepWithClipScale(options, step, clip_scale, stream_));
    }
    if (Sharded()) {  // every owner's updated master weights, to every replica
      Keep(AllGatherFromOwners(chunk->values(), chunk->padded_size(), {0, chunk->padded_size()},
                               stream_));
    }
    Keep(chunk->RefreshComputeCopies());
    Keep(chunk->ZeroGradients());
    if (options_.mirror_to_host) {
      Keep(chunk->DownloadFlat(host_.at(index)->params().values(), chunk->values()));
    }
  }
  moments_written_ = true;
  Keep(oc::CudaStatus(cudaStreamSynchronize(stream_), "cudaStreamSynchronize", __FILE__, __LINE__));
}

std::map<int, std::vector<std::string>> CudaStageWork::GradientNames() {
  std::map<int, std::vector<std::string>> out;
  for (const auto& [index, chunk] : chunks_) {
    for (const models::ParamInfo& info : chunk->infos()) {
      if (!info.tied_copy) out[index].push_back(info.name);
    }
  }
  return out;
}

void CudaStageWork::DiscardGradients() {
  Keep(UseDevice());
  for (auto& [index, chunk] : chunks_) Keep(chunk->ZeroGradients());
  folded_ = false;
}

double CudaStageWork::TakeDataSeconds() {
  const double seconds = data_seconds_;
  data_seconds_ = 0;
  return seconds;
}

absl::Status CudaStageWork::ExportOptimizerState() {
  RETURN_IF_ERROR(UseDevice());
  if (optimizer_.states == nullptr || !moments_written_) return absl::OkStatus();
  for (auto& [index, chunk] : chunks_) {
    OptimizerState& state = (*optimizer_.states)[index];
    const size_t n = static_cast<size_t>(chunk->size());
    state.m.resize(n);
    state.v.resize(n);
    RETURN_IF_ERROR(DownloadMoments(index, m_[index], state.m.data(), /*gather=*/true));
    RETURN_IF_ERROR(DownloadMoments(index, v_[index], state.v.data(), /*gather=*/true));
  }
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

std::map<int, int64_t> CudaStageWork::GradientFloats() const {
  std::map<int, int64_t> out;
  if (options_.data_parallel.device_group == nullptr) return out;
  // The flat device gradient, padding included (zeros on every replica: they sum to zero).
  for (const auto& [index, chunk] : chunks_) out[index] = chunk->padded_size();
  return out;
}

absl::Status CudaStageWork::ReduceGradients(const GradBucket& bucket) {
  DeviceCollective* group = options_.data_parallel.device_group;
  if (group == nullptr) return absl::OkStatus();
  RETURN_IF_ERROR(UseDevice());  // the reduction lane's thread
  ASSIGN_OR_RETURN(models::cuda::CudaGptChunk * c, Get(bucket.chunk));
  if (bucket.begin < 0 || bucket.end > c->padded_size() || bucket.begin > bucket.end) {
    return absl::InvalidArgumentError(
        absl::StrCat("REDUCE_GRAD c", bucket.chunk, " [", bucket.begin, ", ", bucket.end,
                     ") is outside its ", c->padded_size(), " device gradients"));
  }
  // A bucket issued as its layers finished: wait for the event after its last part (the pass
  // is still running on the compute stream); a whole-action bucket's pass has completed.
  if (bucket.after_parts != GradBucket::kWholeAction) {
    cudaEvent_t ready = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      const std::vector<cudaEvent_t>& events = part_events_[bucket.chunk];
      if (bucket.after_parts < 1 || bucket.after_parts > static_cast<int>(events.size())) {
        return absl::FailedPreconditionError(absl::StrCat("REDUCE_GRAD c", bucket.chunk, " after ",
                                                          bucket.after_parts, " parts, but ",
                                                          events.size(), " were reported"));
      }
      ready = events[bucket.after_parts - 1];
    }
    CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(reduce_stream_, ready, 0));
  }
  // The head's gradient, kept apart over the step, is final with the head's part: fold it into
  // its weight before the first bucket holding that weight is summed, on this stream, so that
  // the replicas sum it too (once a step: later folds would add zeros).
  const ElementRange range{bucket.begin, bucket.end};
  if (Intersect(range, HeadWeightRange(*c)).size() > 0 &&
      folded_for_[bucket.chunk] != std::make_pair(step_, run_)) {
    RETURN_IF_ERROR(c->FoldHeadGradientOn(reduce_stream_));
    folded_for_[bucket.chunk] = {step_, run_};
  }
  if (Sharded()) {
    // To the owners; the tied embedding's part gathered back whole, for the cross-chunk tied
    // sum (the same on every member, so the collectives stay matched).
    RETURN_IF_ERROR(ReduceScatterToOwners(c->grads(), c->padded_size(), range, reduce_stream_));
    const ElementRange tied = Intersect(range, TiedRange(*c));
    if (tied.size() > 0) {
      RETURN_IF_ERROR(AllGatherFromOwners(c->grads(), c->padded_size(), tied, reduce_stream_));
    }
  } else {
    RETURN_IF_ERROR(group->AllReduceSum(
        absl::MakeSpan(c->grads() + bucket.begin, bucket.end - bucket.begin), reduce_stream_));
  }
  // The optimizer, on the compute stream, runs after the step's last REDUCE_GRAD returned.
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(reduce_stream_));
  return absl::OkStatus();
}

absl::Status CudaStageWork::GatherLosses(std::vector<double>* losses) {
  return GatherReplicaLosses(options_.data_parallel.group, losses);
}

GradPartLayout CudaStageWork::GradientParts() const {
  GradPartLayout out;
  if (options_.data_parallel.device_group == nullptr) return out;
  for (const auto& [index, chunk] : chunks_) {
    const std::vector<models::ParamInfo>& infos = chunk->infos();
    // Tensor k with the padding after it: the flat buffer is covered but for the no-part
    // tensors (the embedding's), so no sliver of padding becomes a bucket of its own.
    const auto range_of = [&](size_t k) {
      const int64_t end = k + 1 < infos.size() ? chunk->device_offset(k + 1) : chunk->padded_size();
      return std::make_pair(chunk->device_offset(k), end);
    };
    std::vector<std::vector<std::pair<int64_t, int64_t>>>& parts = out[index];
    if (chunk->spec().has_head) {  // the final norm and the head's weight (or its tied copy)
      parts.emplace_back();
      for (size_t k = 0; k < infos.size(); ++k) {
        if (infos[k].tied_copy || absl::StartsWith(infos[k].name, "ln_f.") ||
            infos[k].name == "lm_head.weight") {
          parts.back().push_back(range_of(k));
        }
      }
    }
    for (int l = chunk->spec().end_layer - 1; l >= chunk->spec().first_layer; --l) {
      const std::string layer = absl::StrCat("h.", l, "."), mlp = layer + "mlp.";
      parts.emplace_back();  // its MLP's tensors
      parts.emplace_back();  // the rest of it
      for (size_t k = 0; k < infos.size(); ++k) {
        if (infos[k].tied_copy || !absl::StartsWith(infos[k].name, layer)) continue;
        const bool in_mlp = absl::StartsWith(infos[k].name, mlp);
        parts[parts.size() - (in_mlp ? 2 : 1)].push_back(range_of(k));
      }
    }
  }
  return out;
}

void CudaStageWork::SetGradientProgress(GradientProgress progress) {
  progress_ = std::move(progress);
}

ElementRange CudaStageWork::HeadWeightRange(const models::cuda::CudaGptChunk& chunk) const {
  if (!chunk.spec().has_head) return {};
  return DeviceRangeOf(chunk, chunk.config().tied_head ? "wte" : "lm_head.weight");
}

bool CudaStageWork::DeviceMemory(int64_t* in_use, int64_t* peak) const {
  *in_use = device_in_use_.load(std::memory_order_relaxed);
  *peak = device_peak_.load(std::memory_order_relaxed);
  return true;
}

int64_t CudaStageWork::ActivationBytes(int chunk) const {
  auto it = chunks_.find(chunk);
  if (it == chunks_.end()) return -1;
  const models::cuda::CudaGptChunk& c = *it->second;
  return models::cuda::CudaActivationBytes(c.config(), c.spec(), c.options());
}

int64_t CudaStageWork::OptimizerStateBytes() const {
  int64_t bytes = 0;
  for (const auto& [index, chunk] : chunks_) {
    // Unsharded: the chunk's moments (its tensors, not the device padding between them).
    bytes += 2 * (Sharded() ? Owned(index).size() : chunk->size()) * int64_t{sizeof(float)};
  }
  return bytes;
}

void CudaStageWork::ReleaseExportedOptimizerState() {
  if (!Sharded() || optimizer_.states == nullptr) return;
  for (const auto& [index, chunk] : chunks_) (*optimizer_.states)[index] = OptimizerState{};
}

ElementRange CudaStageWork::Owned(int index) const {
  const models::cuda::CudaGptChunk& chunk = *chunks_.at(index);
  if (!Sharded()) return {0, chunk.padded_size()};
  return OwnedRange(chunk.padded_size(), options_.data_parallel.replicas,
                    options_.data_parallel.replica);
}

ElementRange CudaStageWork::TiedRange(const models::cuda::CudaGptChunk& chunk) const {
  // The embedding tied across chunks: held by the first and the last chunk when they differ
  // (GatherTiedGradients' rule on the CPU).
  if (!chunk.config().tied_head || num_chunks_ < 2) return {};
  if (!chunk.spec().has_embedding && !chunk.spec().has_head) return {};
  return DeviceRangeOf(chunk, "wte");
}

absl::Status CudaStageWork::ReduceScatterToOwners(float* buffer, int64_t n,
                                                  const ElementRange& range, cudaStream_t stream) {
  DeviceCollective& group = *options_.data_parallel.device_group;
  const int members = group.size();
  // Each member sends owner j the elements j owns; it receives every member's copy of its own,
  // one after another, and sums them in member order into its buffer.
  const std::vector<int64_t> send_counts = OwnerCounts(n, members, range);
  const ElementRange mine = Intersect(range, OwnedRange(n, members, group.member()));
  const std::vector<int64_t> recv_counts(members, mine.size());
  const int64_t floats = mine.size() * members;
  if (floats > scatter_scratch_floats_) {
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
    CUDA_RETURN_IF_ERROR(cudaFree(scatter_scratch_));
    scatter_scratch_ = nullptr;
    scatter_scratch_floats_ = 0;
    CUDA_RETURN_IF_ERROR(
        cudaMalloc(reinterpret_cast<void**>(&scatter_scratch_), floats * sizeof(float)));
    scatter_scratch_floats_ = floats;
  }
  RETURN_IF_ERROR(group.AllToAllV(absl::MakeConstSpan(buffer + range.begin, range.size()),
                                  send_counts, absl::MakeSpan(scatter_scratch_, floats),
                                  recv_counts, stream));
  if (mine.size() == 0) return absl::OkStatus();
  std::vector<const float*> parts;
  for (int j = 0; j < members; ++j) parts.push_back(scatter_scratch_ + j * mine.size());
  return oc::SumInMemberOrder(parts, buffer + mine.begin, mine.size(), stream);
}

absl::Status CudaStageWork::AllGatherFromOwners(float* buffer, int64_t n, const ElementRange& range,
                                                cudaStream_t stream) {
  DeviceCollective& group = *options_.data_parallel.device_group;
  const ElementRange mine = Intersect(range, OwnedRange(n, group.size(), group.member()));
  // The owners' pieces partition `range` in member order: each lands in its place, this
  // member's own already there.
  return group.AllGatherV(absl::MakeConstSpan(buffer + mine.begin, mine.size()),
                          OwnerCounts(n, group.size(), range),
                          absl::MakeSpan(buffer + range.begin, range.size()), stream);
}

absl::Status CudaStageWork::ThroughWholeBuffer(int index,
                                               const std::function<absl::Status(float*)>& use) {
  const int64_t floats = chunks_.at(index)->padded_size();
  ASSIGN_OR_RETURN(void* whole, allocator_->Allocate(floats * sizeof(float)));
  float* flat = static_cast<float*>(whole);
  absl::Status s = oc::CudaStatus(cudaMemsetAsync(flat, 0, floats * sizeof(float), stream_),
                                  "cudaMemsetAsync", __FILE__, __LINE__);
  if (s.ok()) s = use(flat);
  if (s.ok()) {
    s = oc::CudaStatus(cudaStreamSynchronize(stream_), "cudaStreamSynchronize", __FILE__, __LINE__);
  }
  allocator_->Free(whole).IgnoreError();
  return s;
}

absl::Status CudaStageWork::DownloadMoments(int index, const float* owned, float* host,
                                            bool gather) {
  models::cuda::CudaGptChunk& chunk = *chunks_.at(index);
  if (!Sharded()) return chunk.DownloadFlat(host, owned);
  const ElementRange mine = Owned(index);
  return ThroughWholeBuffer(index, [&](float* flat) -> absl::Status {
    if (mine.size() > 0) {
      CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(flat + mine.begin, owned, mine.size() * sizeof(float),
                                           cudaMemcpyDeviceToDevice, stream_));
    }
    if (gather) {
      RETURN_IF_ERROR(
          AllGatherFromOwners(flat, chunk.padded_size(), {0, chunk.padded_size()}, stream_));
    }
    return chunk.DownloadFlat(host, flat);
  });
}

absl::Status CudaStageWork::UploadOwnedMoments(int index, const float* host, float* owned) {
  models::cuda::CudaGptChunk& chunk = *chunks_.at(index);
  if (!Sharded()) return chunk.UploadFlat(owned, host);
  const ElementRange mine = Owned(index);
  return ThroughWholeBuffer(index, [&](float* flat) -> absl::Status {
    RETURN_IF_ERROR(chunk.UploadFlat(flat, host));
    if (mine.size() == 0) return absl::OkStatus();
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(owned, flat + mine.begin, mine.size() * sizeof(float),
                                         cudaMemcpyDeviceToDevice, stream_));
    return absl::OkStatus();
  });
}

}  // namespace stagehand::runtime
