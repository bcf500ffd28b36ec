// CudaGptChunk: GPT-2 layers as sequences of ops/cuda calls on one stream. Activations are bf16,
// statistics, weight gradients and master weights fp32 (llm.c's layout of a layer).
#include "models/cuda/cuda_gpt_chunk.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "models/cuda/cuda_support.h"
#include "ops/cuda/attention.h"
#include "ops/cuda/convert.h"
#include "ops/cuda/cuda_status.h"
#include "ops/cuda/encoder.h"
#include "ops/cuda/gelu.h"
#include "ops/cuda/head.h"
#include "ops/cuda/layernorm.h"
#include "ops/cuda/linear.h"
#include "ops/cuda/residual.h"
#include "ops/cuda/token_groups.h"
#include "runtime/util/status_macros.h"

namespace stagehand::models::cuda {

namespace oc = ::stagehand::ops::cuda;

// One layer's saved tensors: F's (read by B and W) and B's (read by W).
struct CudaGptChunk::LayerBuffers {
  bf16 *ln1 = nullptr, *qkv = nullptr, *atty = nullptr, *att = nullptr, *res2 = nullptr,
       *ln2 = nullptr, *fch = nullptr, *fch_gelu = nullptr, *out = nullptr;
  float *mean1 = nullptr, *rstd1 = nullptr, *mean2 = nullptr, *rstd2 = nullptr;
  bf16 *d_fch = nullptr, *d_ln2 = nullptr, *d_res2 = nullptr, *d_qkv = nullptr, *d_ln1 = nullptr,
       *dx = nullptr;
};

struct CudaGptChunk::MicrobatchState {
  std::vector<void*> owned;   // every block below, returned to the allocator on release
  int32_t* tokens = nullptr;  // (N): the embedding's chunk
  // The embedding's chunk: positions grouped by token for its W (ops/cuda/token_groups.h).
  int32_t *order = nullptr, *starts = nullptr, *ids = nullptr;
  int groups = 0;
  int32_t* targets = nullptr;  // (N): the head's chunk
  bf16* x0 = nullptr;          // (N, C): the embedding's output, or the input's copy
  std::vector<LayerBuffers> layers;
  bf16 *lnf = nullptr, *logits = nullptr;  // the head: logits become dlogits in F
  float *meanf = nullptr, *rstdf = nullptr, *losses = nullptr;
  bf16 *d_lnf = nullptr, *d_top = nullptr;  // B: the final norm's and the last layer's output's
  bool input_grads_done = false;
};

CudaGptChunk::CudaGptChunk(const GptChunk<float>& host, oc::CachingAllocator* allocator,
                           oc::Matmul* matmul, cudaStream_t stream)
    : config_(host.config()),
      spec_(host.spec()),
      options_(host.options()),
      infos_(host.params().infos()),
      size_(host.params().size()),
      allocator_(allocator),
      matmul_(matmul),
      stream_(stream) {
  constexpr int64_t kAlignFloats = 128;  // 256 bytes of bf16 (512 of fp32)
  for (const ParamInfo& info : infos_) {
    device_offsets_.push_back(padded_size_);
    offsets_[info.name] = padded_size_;
    padded_size_ += (info.size + kAlignFloats - 1) / kAlignFloats * kAlignFloats;
  }
  vp_ = (config_.vocab_size + 63) / 64 * 64;
}

CudaGptChunk::~CudaGptChunk() {
  for (auto& [mb, st] : states_) FreeState(*st);
  for (void* block : owned_) allocator_->Free(block).IgnoreError();
}

absl::StatusOr<std::unique_ptr<CudaGptChunk>> CudaGptChunk::Create(const GptChunk<float>& host,
                                                                   oc::CachingAllocator* allocator,
                                                                   oc::Matmul* matmul,
                                                                   cudaStream_t stream) {
  RETURN_IF_ERROR(CheckCudaChunkSupport(host.config(), host.options()));
  if (allocator == nullptr || matmul == nullptr) {
    return absl::InvalidArgumentError("CudaGptChunk: no allocator or matmul");
  }
  std::unique_ptr<CudaGptChunk> chunk(new CudaGptChunk(host, allocator, matmul, stream));
  RETURN_IF_ERROR(chunk->Allocate());
  RETURN_IF_ERROR(chunk->UploadValues(host.params().values()));
  return chunk;
}

absl::StatusOr<void*> CudaGptChunk::Take(size_t bytes, std::vector<void*>& owned) {
  ASSIGN_OR_RETURN(void* block, allocator_->Allocate(bytes));
  owned.push_back(block);
  return block;
}

absl::Status CudaGptChunk::Allocate() {
  const int64_t C = config_.d_model, N = this->N();
  int64_t ffn = 0;
  for (int l = spec_.first_layer; l < spec_.end_layer; ++l) {
    ffn = std::max(ffn, config_.FcWidth(config_.layers[l]));
  }
  const int64_t padded = std::max<int64_t>(padded_size_, 1);
  ASSIGN_OR_RETURN(void* values, Take(padded * sizeof(float), owned_));
  ASSIGN_OR_RETURN(void* grads, Take(padded * sizeof(float), owned_));
  ASSIGN_OR_RETURN(void* compute, Take(padded * sizeof(bf16), owned_));
  values_ = static_cast<float*>(values);
  grads_ = static_cast<float*>(grads);
  compute_ = static_cast<bf16*>(compute);
  CUDA_RETURN_IF_ERROR(cudaMemsetAsync(values_, 0, padded * sizeof(float), stream_));
  if (spec_.has_head) {
    ASSIGN_OR_RETURN(void* weight, Take(int64_t{vp_} * C * sizeof(bf16), owned_));
    ASSIGN_OR_RETURN(void* grad, Take(int64_t{vp_} * C * sizeof(float), owned_));
    head_weight_ = static_cast<bf16*>(weight);
    head_grad_ = static_cast<float*>(grad);
    CUDA_RETURN_IF_ERROR(
        cudaMemsetAsync(head_weight_, 0, int64_t{vp_} * C * sizeof(bf16), stream_));
  }
  ASSIGN_OR_RETURN(attention_scratch_,
                   Take(std::max<size_t>(1, oc::AttentionScratchBytes(
                                                options_.micro_batch_size, options_.seq_len,
                                                config_.d_model, config_.num_heads)),
                        owned_));
  ASSIGN_OR_RETURN(void* scratch_c, Take(N * C * sizeof(bf16), owned_));
  ASSIGN_OR_RETURN(void* scratch_4c, Take(N * std::max<int64_t>(ffn, 1) * sizeof(bf16), owned_));
  scratch_c_ = static_cast<bf16*>(scratch_c);
  scratch_4c_ = static_cast<bf16*>(scratch_4c);
  return ZeroGradients();
}

absl::Status CudaGptChunk::UploadValues(const float* values) {
  RETURN_IF_ERROR(UploadFlat(values_, values));
  return RefreshComputeCopies();
}

absl::Status CudaGptChunk::UploadFlat(float* device, const float* host) {
  for (size_t t = 0; t < infos_.size(); ++t) {
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(device + device_offsets_[t], host + infos_[t].offset,
                                         infos_[t].size * sizeof(float), cudaMemcpyHostToDevice,
                                         stream_));
  }
  return absl::OkStatus();
}

absl::Status CudaGptChunk::DownloadFlat(float* host, const float* device) {
  for (size_t t = 0; t < infos_.size(); ++t) {
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host + infos_[t].offset, device + device_offsets_[t],
                                         infos_[t].size * sizeof(float), cudaMemcpyDeviceToHost,
                                         stream_));
  }
  return absl::OkStatus();
}

absl::Status CudaGptChunk::RefreshComputeCopies() {
  RETURN_IF_ERROR(oc::FloatToBf16(compute_, values_, padded_size_, stream_));
  if (spec_.has_head) {
    const int64_t head = Offset(config_.tied_head ? "wte" : "lm_head.weight");
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
        head_weight_, compute_ + head, int64_t{config_.vocab_size} * config_.d_model * sizeof(bf16),
        cudaMemcpyDeviceToDevice, stream_));
  }
  return absl::OkStatus();
}

absl::Status CudaGptChunk::SetStepMicrobatches(int m) {
  if (m < 1 || m > options_.num_microbatches) {
    return absl::InvalidArgumentError(
        absl::StrCat("step microbatches ", m, ": must be in [1, ", options_.num_microbatches, "]"));
  }
  step_microbatches_ = m;
  return absl::OkStatus();
}

int64_t CudaGptChunk::Offset(const std::string& name) const {
  auto it = offsets_.find(name);
  return it == offsets_.end() ? -1 : it->second;
}

float* CudaGptChunk::Grad(const std::string& name) {
  const int64_t offset = Offset(name);
  return offset < 0 ? nullptr : grads_ + offset;
}

const bf16* CudaGptChunk::Compute(const std::string& name) const {
  const int64_t offset = Offset(name);
  return offset < 0 ? nullptr : compute_ + offset;
}

const bf16* CudaGptChunk::HeadWeight() const { return head_weight_; }

absl::StatusOr<std::unique_ptr<CudaGptChunk::MicrobatchState>> CudaGptChunk::NewState() {
  auto st = std::make_unique<MicrobatchState>();
  const int64_t B = options_.micro_batch_size, T = options_.seq_len, C = config_.d_model;
  const int64_t N = B * T, NH = config_.num_heads;
  auto bf = [&](int64_t elements) -> absl::StatusOr<bf16*> {
    ASSIGN_OR_RETURN(void* block, Take(elements * sizeof(bf16), st->owned));
    return static_cast<bf16*>(block);
  };
  auto f32 = [&](int64_t elements) -> absl::StatusOr<float*> {
    ASSIGN_OR_RETURN(void* block, Take(elements * sizeof(float), st->owned));
    return static_cast<float*>(block);
  };
  absl::Status status = [&]() -> absl::Status {
    if (spec_.has_embedding) {
      ASSIGN_OR_RETURN(void* tokens, Take(N * sizeof(int32_t), st->owned));
      st->tokens = static_cast<int32_t*>(tokens);
    }
    ASSIGN_OR_RETURN(st->x0, bf(N * C));
    for (int l = spec_.first_layer; l < spec_.end_layer; ++l) {
      const int64_t F = config_.FcWidth(config_.layers[l]);
      LayerBuffers b;
      ASSIGN_OR_RETURN(b.ln1, bf(N * C));
      ASSIGN_OR_RETURN(b.qkv, bf(N * 3 * C));
      ASSIGN_OR_RETURN(b.atty, bf(N * C));
      ASSIGN_OR_RETURN(b.att, bf(B * NH * T * T));
      ASSIGN_OR_RETURN(b.res2, bf(N * C));
      ASSIGN_OR_RETURN(b.ln2, bf(N * C));
      ASSIGN_OR_RETURN(b.fch, bf(N * F));
      ASSIGN_OR_RETURN(b.fch_gelu, bf(N * F));
      ASSIGN_OR_RETURN(b.out, bf(N * C));
      ASSIGN_OR_RETURN(b.mean1, f32(N));
      ASSIGN_OR_RETURN(b.rstd1, f32(N));
      ASSIGN_OR_RETURN(b.mean2, f32(N));
      ASSIGN_OR_RETURN(b.rstd2, f32(N));
      st->layers.push_back(b);
    }
    if (spec_.has_head) {
      ASSIGN_OR_RETURN(void* targets, Take(N * sizeof(int32_t), st->owned));
      st->targets = static_cast<int32_t*>(targets);
      ASSIGN_OR_RETURN(st->lnf, bf(N * C));
      ASSIGN_OR_RETURN(st->logits, bf(N * vp_));
      ASSIGN_OR_RETURN(st->meanf, f32(N));
      ASSIGN_OR_RETURN(st->rstdf, f32(N));
      ASSIGN_OR_RETURN(st->losses, f32(N));
    }
    return absl::OkStatus();
  }();
  if (!status.ok()) {
    FreeState(*st);
    return status;
  }
  return st;
}

void CudaGptChunk::FreeState(MicrobatchState& st) {
  for (void* block : st.owned) allocator_->Free(block).IgnoreError();
  st.owned.clear();
}

absl::StatusOr<CudaGptChunk::MicrobatchState*> CudaGptChunk::Find(int mb, const char* what) const {
  auto it = states_.find(mb);
  if (it == states_.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, " of microbatch ", mb, ": its forward has not run on this chunk"));
  }
  return it->second.get();
}

namespace {

// InvalidArgument unless every id of `ids` (n) is in [0, V).
absl::Status CheckIds(const char* what, const int32_t* ids, int64_t n, int V) {
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= V) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, "[", i, "] = ", ids[i], " is outside the vocabulary [0, ", V, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CudaGptChunk::Forward(int mb, const int32_t* tokens, const bf16* input,
                                   const int32_t* targets) {
  if (states_.count(mb) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("F of microbatch ", mb, ": its activations are still held"));
  }
  if (spec_.has_embedding ? tokens == nullptr : input == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("F of microbatch ", mb, ": the chunk needs ",
                                                   spec_.has_embedding ? "tokens" : "an input"));
  }
  if (spec_.has_head && targets == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("F of microbatch ", mb, ": no targets"));
  }
  const int B = options_.micro_batch_size, T = options_.seq_len, C = config_.d_model;
  const int64_t N = this->N();
  if (spec_.has_embedding) RETURN_IF_ERROR(CheckIds("token", tokens, N, config_.vocab_size));
  if (spec_.has_head) RETURN_IF_ERROR(CheckIds("target", targets, N, config_.vocab_size));
  ASSIGN_OR_RETURN(std::unique_ptr<MicrobatchState> owned, NewState());
  MicrobatchState& st = *owned;
  states_[mb] = std::move(owned);
  if (spec_.has_embedding) {
    CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(st.tokens, tokens, N * sizeof(int32_t), cudaMemcpyHostToDevice, stream_));
    RETURN_IF_ERROR(
        oc::EncoderForward(st.x0, st.tokens, Compute("wte"), Compute("wpe"), B, T, C, stream_));
    // W's grouping, built here from the host's tokens and uploaded with them.
    const oc::TokenGroups groups = oc::GroupPositionsByToken(tokens, N, config_.vocab_size);
    ASSIGN_OR_RETURN(void* order, Take(N * sizeof(int32_t), st.owned));
    ASSIGN_OR_RETURN(void* starts, Take((groups.groups() + 1) * sizeof(int32_t), st.owned));
    ASSIGN_OR_RETURN(void* ids, Take(std::max(groups.groups(), 1) * sizeof(int32_t), st.owned));
    st.order = static_cast<int32_t*>(order);
    st.starts = static_cast<int32_t*>(starts);
    st.ids = static_cast<int32_t*>(ids);
    st.groups = groups.groups();
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(st.order, groups.order.data(), N * sizeof(int32_t),
                                         cudaMemcpyHostToDevice, stream_));
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(st.starts, groups.starts.data(),
                                         groups.starts.size() * sizeof(int32_t),
                                         cudaMemcpyHostToDevice, stream_));
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(st.ids, groups.ids.data(),
                                         groups.ids.size() * sizeof(int32_t),
                                         cudaMemcpyHostToDevice, stream_));
  } else {
    CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(st.x0, input, N * C * sizeof(bf16), cudaMemcpyDeviceToDevice, stream_));
  }
  for (int i = 0; i < static_cast<int>(st.layers.size()); ++i) RETURN_IF_ERROR(LayerForward(st, i));
  if (!spec_.has_head) return absl::OkStatus();
  CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(st.targets, targets, N * sizeof(int32_t), cudaMemcpyHostToDevice, stream_));
  const bf16* last = st.layers.empty() ? st.x0 : st.layers.back().out;
  RETURN_IF_ERROR(oc::LayerNormForward(st.lnf, st.meanf, st.rstdf, last, Compute("ln_f.weight"),
                                       Compute("ln_f.bias"), N, C, stream_));
  // The step's loss is the mean over M microbatches of each one's mean token loss.
  const float dloss = static_cast<float>(1.0 / (static_cast<double>(N) * step_microbatches_));
  return oc::HeadForwardLoss(st.losses, st.logits, st.lnf, HeadWeight(), st.targets, dloss, N, C,
                             config_.vocab_size, vp_, *matmul_, stream_);
}

CudaGptChunk::LayerView CudaGptChunk::ViewOf(MicrobatchState& st, int i) const {
  const int l = spec_.first_layer + i;
  LayerView v;
  v.B = options_.micro_batch_size;
  v.T = options_.seq_len;
  v.C = config_.d_model;
  v.NH = config_.num_heads;
  v.N = static_cast<int>(N());
  v.F = static_cast<int>(config_.FcWidth(config_.layers[l]));
  v.h = absl::StrCat("h.", l, ".");
  v.x = i == 0 ? st.x0 : st.layers[i - 1].out;
  v.b = &st.layers[i];
  return v;
}

absl::Status CudaGptChunk::LayerForward(MicrobatchState& st, int i) {
  const LayerView v = ViewOf(st, i);
  const int B = v.B, T = v.T, C = v.C, NH = v.NH, N = v.N, F = v.F;
  const std::string& h = v.h;
  const bf16* x = v.x;
  LayerBuffers& b = *v.b;
  RETURN_IF_ERROR(oc::LayerNormForward(b.ln1, b.mean1, b.rstd1, x, Compute(h + "ln_1.weight"),
                                       Compute(h + "ln_1.bias"), N, C, stream_));
  RETURN_IF_ERROR(oc::LinearForward(b.qkv, b.ln1, Compute(h + "attn.c_attn.weight"),
                                    Compute(h + "attn.c_attn.bias"), N, C, 3 * C, *matmul_,
                                    stream_));
  RETURN_IF_ERROR(oc::AttentionForward(b.atty, b.att, b.qkv, attention_scratch_, B, T, C, NH,
                                       *matmul_, stream_));
  RETURN_IF_ERROR(oc::LinearForward(scratch_c_, b.atty, Compute(h + "attn.c_proj.weight"),
                                    Compute(h + "attn.c_proj.bias"), N, C, C, *matmul_, stream_));
  RETURN_IF_ERROR(oc::ResidualForward(b.res2, x, scratch_c_, int64_t{N} * C, stream_));
  RETURN_IF_ERROR(oc::LayerNormForward(b.ln2, b.mean2, b.rstd2, b.res2, Compute(h + "ln_2.weight"),
                                       Compute(h + "ln_2.bias"), N, C, stream_));
  RETURN_IF_ERROR(oc::LinearForward(b.fch, b.ln2, Compute(h + "mlp.c_fc.weight"),
                                    Compute(h + "mlp.c_fc.bias"), N, C, F, *matmul_, stream_));
  RETURN_IF_ERROR(oc::GeluForward(b.fch_gelu, b.fch, int64_t{N} * F, stream_));
  RETURN_IF_ERROR(oc::LinearForward(scratch_c_, b.fch_gelu, Compute(h + "mlp.c_proj.weight"),
                                    Compute(h + "mlp.c_proj.bias"), N, F, C, *matmul_, stream_));
  return oc::ResidualForward(b.out, b.res2, scratch_c_, int64_t{N} * C, stream_);
}

absl::StatusOr<const bf16*> CudaGptChunk::Output(int mb) const {
  ASSIGN_OR_RETURN(MicrobatchState * st, Find(mb, "the output"));
  if (spec_.has_head) {
    return absl::FailedPreconditionError("the head's chunk has a loss, not an output");
  }
  return st->layers.empty() ? st->x0 : st->layers.back().out;
}

absl::StatusOr<const float*> CudaGptChunk::DeviceLosses(int mb) const {
  ASSIGN_OR_RETURN(MicrobatchState * st, Find(mb, "the loss"));
  if (!spec_.has_head) return absl::FailedPreconditionError("only the head's chunk has a loss");
  return st->losses;
}

absl::StatusOr<double> CudaGptChunk::Loss(int mb) {
  ASSIGN_OR_RETURN(MicrobatchState * st, Find(mb, "the loss"));
  if (!spec_.has_head) return absl::FailedPreconditionError("only the head's chunk has a loss");
  const int64_t N = this->N();
  std::vector<float> losses(N);
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(losses.data(), st->losses, N * sizeof(float),
                                       cudaMemcpyDeviceToHost, stream_));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  double sum = 0.0;
  for (float loss : losses) sum += loss;
  return sum / static_cast<double>(N);
}

absl::Status CudaGptChunk::BackwardInput(int mb, const bf16* dout) {
  ASSIGN_OR_RETURN(MicrobatchState * found, Find(mb, "B"));
  MicrobatchState& st = *found;
  if (st.input_grads_done) {
    return absl::FailedPreconditionError(absl::StrCat("B of microbatch ", mb, " ran twice"));
  }
  if (!spec_.has_head && dout == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("B of microbatch ", mb, ": no gradient"));
  }
  const int C = config_.d_model;
  const int64_t N = this->N();
  auto bf = [&](int64_t elements) -> absl::StatusOr<bf16*> {
    ASSIGN_OR_RETURN(void* block, Take(elements * sizeof(bf16), st.owned));
    return static_cast<bf16*>(block);
  };
  for (int i = 0; i < static_cast<int>(st.layers.size()); ++i) {
    LayerBuffers& b = st.layers[i];
    const int64_t F = config_.FcWidth(config_.layers[spec_.first_layer + i]);
    ASSIGN_OR_RETURN(b.d_fch, bf(N * F));
    ASSIGN_OR_RETURN(b.d_ln2, bf(N * C));
    ASSIGN_OR_RETURN(b.d_res2, bf(N * C));
    ASSIGN_OR_RETURN(b.d_qkv, bf(N * 3 * C));
    ASSIGN_OR_RETURN(b.d_ln1, bf(N * C));
    ASSIGN_OR_RETURN(b.dx, bf(N * C));
  }
  ASSIGN_OR_RETURN(st.d_top, bf(N * C));
  const bf16* last = st.layers.empty() ? st.x0 : st.layers.back().out;
  if (spec_.has_head) {
    ASSIGN_OR_RETURN(st.d_lnf, bf(N * C));
    CUDA_RETURN_IF_ERROR(cudaMemsetAsync(st.d_lnf, 0, N * C * sizeof(bf16), stream_));
    RETURN_IF_ERROR(
        oc::HeadBackwardInput(st.d_lnf, st.logits, HeadWeight(), N, C, vp_, *matmul_, stream_));
    CUDA_RETURN_IF_ERROR(cudaMemsetAsync(st.d_top, 0, N * C * sizeof(bf16), stream_));
    RETURN_IF_ERROR(oc::LayerNormBackwardInput(st.d_top, st.d_lnf, last, Compute("ln_f.weight"),
                                               st.meanf, st.rstdf, N, C, stream_));
  } else {
    CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(st.d_top, dout, N * C * sizeof(bf16), cudaMemcpyDeviceToDevice, stream_));
  }
  for (int i = static_cast<int>(st.layers.size()) - 1; i >= 0; --i) {
    const bf16* d_out =
        i + 1 == static_cast<int>(st.layers.size()) ? st.d_top : st.layers[i + 1].dx;
    RETURN_IF_ERROR(LayerBackwardInput(st, i, d_out));
  }
  st.input_grads_done = true;
  return absl::OkStatus();
}

absl::Status CudaGptChunk::LayerBackwardInput(MicrobatchState& st, int i, const bf16* dout) {
  const LayerView v = ViewOf(st, i);
  const int B = v.B, T = v.T, C = v.C, NH = v.NH, N = v.N, F = v.F;
  const std::string& h = v.h;
  const bf16* x = v.x;
  LayerBuffers& b = *v.b;
  const size_t nc = size_t{static_cast<size_t>(N)} * C * sizeof(bf16);
  // The MLP: d(gelu out) = dout W_proj, d(fc out) through GELU, d(ln2 out) = d_fch W_fc.
  CUDA_RETURN_IF_ERROR(cudaMemsetAsync(scratch_4c_, 0, size_t(N) * F * sizeof(bf16), stream_));
  RETURN_IF_ERROR(oc::LinearBackwardInput(scratch_4c_, dout, Compute(h + "mlp.c_proj.weight"), N, F,
                                          C, *matmul_, stream_));
  CUDA_RETURN_IF_ERROR(cudaMemsetAsync(b.d_fch, 0, size_t(N) * F * sizeof(bf16), stream_));
  RETURN_IF_ERROR(oc::GeluBackwardInput(b.d_fch, b.fch, scratch_4c_, int64_t{N} * F, stream_));
  CUDA_RETURN_IF_ERROR(cudaMemsetAsync(b.d_ln2, 0, nc, stream_));
  RETURN_IF_ERROR(oc::LinearBackwardInput(b.d_ln2, b.d_fch, Compute(h + "mlp.c_fc.weight"), N, C, F,
                                          *matmul_, stream_));
  // The residual: d(res2) = dout + the second norm's input gradient.
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(b.d_res2, dout, nc, cudaMemcpyDeviceToDevice, stream_));
  RETURN_IF_ERROR(oc::LayerNormBackwardInput(b.d_res2, b.d_ln2, b.res2, Compute(h + "ln_2.weight"),
                                             b.mean2, b.rstd2, N, C, stream_));
  // Attention: d(atty) = d_res2 W_attproj, then the core's gradient into qkv, then d(ln1 out).
  CUDA_RETURN_IF_ERROR(cudaMemsetAsync(scratch_c_, 0, nc, stream_));
  RETURN_IF_ERROR(oc::LinearBackwardInput(scratch_c_, b.d_res2, Compute(h + "attn.c_proj.weight"),
                                          N, C, C, *matmul_, stream_));
  CUDA_RETURN_IF_ERROR(cudaMemsetAsync(b.d_qkv, 0, 3 * nc, stream_));
  RETURN_IF_ERROR(oc::AttentionBackwardInput(b.d_qkv, scratch_c_, b.qkv, b.att, attention_scratch_,
                                             B, T, C, NH, *matmul_, stream_));
  CUDA_RETURN_IF_ERROR(cudaMemsetAsync(b.d_ln1, 0, nc, stream_));
  RETURN_IF_ERROR(oc::LinearBackwardInput(b.d_ln1, b.d_qkv, Compute(h + "attn.c_attn.weight"), N, C,
                                          3 * C, *matmul_, stream_));
  // The residual: d(x) = d_res2 + the first norm's input gradient.
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(b.dx, b.d_res2, nc, cudaMemcpyDeviceToDevice, stream_));
  return oc::LayerNormBackwardInput(b.dx, b.d_ln1, x, Compute(h + "ln_1.weight"), b.mean1, b.rstd1,
                                    N, C, stream_);
}

absl::StatusOr<const bf16*> CudaGptChunk::InputGrad(int mb) const {
  ASSIGN_OR_RETURN(MicrobatchState * st, Find(mb, "the input gradient"));
  if (spec_.has_embedding) {
    return absl::FailedPreconditionError("the embedding's chunk has no input gradient");
  }
  if (!st->input_grads_done) {
    return absl::FailedPreconditionError(
        absl::StrCat("the input gradient of microbatch ", mb, ": its B has not run"));
  }
  return st->layers.empty() ? st->d_top : st->layers.front().dx;
}

absl::Status CudaGptChunk::BackwardWeights(int mb, const std::function<void()>& part_done) {
  ASSIGN_OR_RETURN(MicrobatchState * found, Find(mb, "W"));
  MicrobatchState& st = *found;
  if (!st.input_grads_done) {
    return absl::FailedPreconditionError(
        absl::StrCat("W of microbatch ", mb, ": its B has not run"));
  }
  const int B = options_.micro_batch_size, T = options_.seq_len, C = config_.d_model;
  const int N = static_cast<int>(this->N());
  const bf16* last = st.layers.empty() ? st.x0 : st.layers.back().out;
  if (spec_.has_head) {  // the head's weight gradient apart (FoldHeadGradient), then ln_f's
    RETURN_IF_ERROR(
        oc::HeadBackwardWeights(head_grad_, st.logits, st.lnf, N, C, vp_, *matmul_, stream_));
    RETURN_IF_ERROR(oc::LayerNormBackwardWeights(Grad("ln_f.weight"), Grad("ln_f.bias"), st.d_lnf,
                                                 last, st.meanf, st.rstdf, N, C, stream_));
    if (part_done) part_done();
  }
  for (int i = static_cast<int>(st.layers.size()) - 1; i >= 0; --i) {
    RETURN_IF_ERROR(LayerBackwardWeights(st, i, part_done));
  }
  if (spec_.has_embedding) {
    const bf16* d_x0 = st.layers.empty() ? st.d_top : st.layers.front().dx;
    RETURN_IF_ERROR(oc::EncoderBackwardWeightsGrouped(
        Grad("wte"), Grad("wpe"), d_x0, st.order, st.starts, st.ids, st.groups, B, T, C, stream_));
  }
  Release(mb);
  return absl::OkStatus();
}

absl::Status CudaGptChunk::LayerBackwardWeights(MicrobatchState& st, int i,
                                                const std::function<void()>& part_done) {
  const LayerView v = ViewOf(st, i);
  const int C = v.C, N = v.N, F = v.F;
  const std::string& h = v.h;
  const bf16* x = v.x;
  const bf16* dout = i + 1 == static_cast<int>(st.layers.size()) ? st.d_top : st.layers[i + 1].dx;
  LayerBuffers& b = *v.b;
  RETURN_IF_ERROR(oc::LinearBackwardWeights(Grad(h + "mlp.c_proj.weight"),
                                            Grad(h + "mlp.c_proj.bias"), dout, b.fch_gelu, N, F, C,
                                            *matmul_, stream_));
  RETURN_IF_ERROR(oc::LinearBackwardWeights(Grad(h + "mlp.c_fc.weight"), Grad(h + "mlp.c_fc.bias"),
                                            b.d_fch, b.ln2, N, C, F, *matmul_, stream_));
  if (part_done) part_done();  // the MLP's tensors
  RETURN_IF_ERROR(oc::LayerNormBackwardWeights(Grad(h + "ln_2.weight"), Grad(h + "ln_2.bias"),
                                               b.d_ln2, b.res2, b.mean2, b.rstd2, N, C, stream_));
  RETURN_IF_ERROR(oc::LinearBackwardWeights(Grad(h + "attn.c_proj.weight"),
                                            Grad(h + "attn.c_proj.bias"), b.d_res2, b.atty, N, C, C,
                                            *matmul_, stream_));
  RETURN_IF_ERROR(oc::LinearBackwardWeights(Grad(h + "attn.c_attn.weight"),
                                            Grad(h + "attn.c_attn.bias"), b.d_qkv, b.ln1, N, C,
                                            3 * C, *matmul_, stream_));
  RETURN_IF_ERROR(oc::LayerNormBackwardWeights(Grad(h + "ln_1.weight"), Grad(h + "ln_1.bias"),
                                               b.d_ln1, x, b.mean1, b.rstd1, N, C, stream_));
  if (part_done) part_done();  // the rest of the layer
  return absl::OkStatus();
}

void CudaGptChunk::Release(int mb) {
  auto it = states_.find(mb);
  if (it == states_.end()) return;
  // Stream-ordered reuse: the blocks go back to the cache now, and whatever takes them next is
  // enqueued on this same stream behind the kernels that still read them.
  FreeState(*it->second);
  states_.erase(it);
}

absl::Status CudaGptChunk::FoldHeadGradient() { return FoldHeadGradientOn(stream_); }

absl::Status CudaGptChunk::FoldHeadGradientOn(cudaStream_t stream) {
  if (!spec_.has_head) return absl::OkStatus();
  float* grad = Grad(config_.tied_head ? "wte" : "lm_head.weight");
  const int64_t n = int64_t{config_.vocab_size} * config_.d_model;
  RETURN_IF_ERROR(oc::AddFloat(grad, head_grad_, n, stream));
  CUDA_RETURN_IF_ERROR(
      cudaMemsetAsync(head_grad_, 0, int64_t{vp_} * config_.d_model * sizeof(float), stream));
  return absl::OkStatus();
}

absl::Status CudaGptChunk::ZeroGradients() {
  CUDA_RETURN_IF_ERROR(cudaMemsetAsync(grads_, 0, padded_size_ * sizeof(float), stream_));
  if (head_grad_ != nullptr) {
    CUDA_RETURN_IF_ERROR(
        cudaMemsetAsync(head_grad_, 0, int64_t{vp_} * config_.d_model * sizeof(float), stream_));
  }
  return absl::OkStatus();
}

}  // namespace stagehand::models::cuda
