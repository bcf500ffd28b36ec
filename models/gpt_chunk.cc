// GptChunk: GPT-2 layers as forward / B / W calls over saved per-microbatch state.
// Letters: B micro-batch size, T sequence length, C width, NH heads, V vocabulary, N = B*T.
#include "models/gpt_chunk.h"

#include <cmath>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "ops/cpu/attention.h"
#include "ops/cpu/cross_entropy.h"
#include "ops/cpu/encoder.h"
#include "ops/cpu/gelu.h"
#include "ops/cpu/layernorm.h"
#include "ops/cpu/linear.h"
#include "ops/cpu/residual.h"

namespace stagehand::models {

absl::StatusOr<std::vector<ChunkSpec>> CutLayersAs(int num_layers,
                                                   const std::vector<int>& layers_per_chunk) {
  if (layers_per_chunk.empty()) return absl::InvalidArgumentError("no chunks to cut into");
  int first = 0;
  std::vector<ChunkSpec> chunks;
  for (size_t i = 0; i < layers_per_chunk.size(); ++i) {
    if (layers_per_chunk[i] <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("chunk ", i, " would hold ", layers_per_chunk[i],
                       " layers; every chunk needs at least one"));
    }
    ChunkSpec spec;
    spec.first_layer = first;
    spec.end_layer = first + layers_per_chunk[i];
    spec.has_embedding = i == 0;
    spec.has_head = i + 1 == layers_per_chunk.size();
    first = spec.end_layer;
    chunks.push_back(spec);
  }
  if (first != num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("chunk sizes add up to ", first,
                                                   " layers but the model has ", num_layers));
  }
  return chunks;
}

absl::StatusOr<std::vector<ChunkSpec>> CutLayers(int num_layers, int num_chunks) {
  if (num_chunks <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("cannot cut into ", num_chunks, " chunks"));
  }
  if (num_layers < num_chunks) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot cut ", num_layers, " layers into ", num_chunks,
                     " chunks: every chunk needs at least one layer (use more --layers or "
                     "fewer stages/chunks)"));
  }
  std::vector<int> sizes(num_chunks, num_layers / num_chunks);
  for (int i = 0; i < num_layers % num_chunks; ++i) ++sizes[i];
  return CutLayersAs(num_layers, sizes);
}

// Saved state of one layer for one microbatch. Activations are written by F; gradient
// buffers by B and read by W.
template <typename Real>
struct GptChunk<Real>::LayerState {
  // Activations.
  std::vector<Real> ln1, ln1_mean, ln1_rstd;  // (N, C), (N), (N)
  std::vector<Real> qkv;                      // (N, 3C)
  std::vector<Real> att;                      // (B, NH, T, T)
  std::vector<Real> atty;                     // (N, C)
  std::vector<Real> residual2;                // (N, C) x + attn
  std::vector<Real> ln2, ln2_mean, ln2_rstd;  // (N, C), (N), (N)
  std::vector<Real> fch, fch_gelu;            // (N, 4C)
  std::vector<Real> out;                      // (N, C) residual2 + mlp
  const Real* in = nullptr;                   // (N, C) the layer's input
  const Real* res2 = nullptr;                 // residual2, or `in` when there is no attention
  const Real* res3 = nullptr;                 // out, or res2 when there is no MLP
  // Gradients (B writes, W reads).
  std::vector<Real> d_in;                     // (N, C) gradient of the layer input
  std::vector<Real> d_res2;                   // (N, C)
  std::vector<Real> d_ln1, d_ln2;             // (N, C)
  std::vector<Real> d_qkv;                    // (N, 3C)
  std::vector<Real> d_fch;                    // (N, 4C)
  const Real* d_out = nullptr;                // gradient of res3 (the next layer's d_in)
  const Real* d_res2_ptr = nullptr;           // d_res2, or d_out when there is no MLP
};

template <typename Real>
struct GptChunk<Real>::MicrobatchState {
  bool backward_input_done = false;
  std::vector<int32_t> tokens, targets;       // (N)
  std::vector<Real> input;                    // (N, C) encoded tokens or received activation
  std::vector<LayerState> layers;
  std::vector<Real> lnf, lnf_mean, lnf_rstd;  // (N, C), (N), (N)
  std::vector<Real> probs;                    // (N, V) probabilities; B turns them into dlogits
  std::vector<Real> losses;                   // (N)
  std::vector<Real> d_output;                 // (N, C) gradient of the chunk output
  std::vector<Real> d_lnf;                    // (N, C)
  std::vector<Real> scratch_gelu;             // (N, 4C) B-only temporaries
  std::vector<Real> scratch_atty;             // (N, C)
  double loss = 0.0;
};

template <typename Real>
GptChunk<Real>::GptChunk(const GptConfig& config, const ChunkSpec& spec,
                         const ChunkOptions& options)
    : config_(config), spec_(spec), options_(options) {}

template <typename Real>
GptChunk<Real>::~GptChunk() = default;

template <typename Real>
absl::StatusOr<std::unique_ptr<GptChunk<Real>>> GptChunk<Real>::Create(
    const GptConfig& config, const ChunkSpec& spec, const ChunkOptions& options) {
  if (absl::Status s = ValidateGptConfig(config); !s.ok()) return s;
  const int L = static_cast<int>(config.layers.size());
  if (spec.first_layer < 0 || spec.end_layer > L || spec.first_layer >= spec.end_layer) {
    return absl::InvalidArgumentError(absl::StrCat("chunk layers [", spec.first_layer, ", ",
                                                   spec.end_layer, ") are not a non-empty range of the ",
                                                   L, " layers"));
  }
  if (options.micro_batch_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("micro_batch_size=", options.micro_batch_size, ": must be positive"));
  }
  if (options.seq_len <= 0 || options.seq_len > config.max_seq_len) {
    return absl::InvalidArgumentError(absl::StrCat("seq_len=", options.seq_len,
                                                   ": must be in [1, ", config.max_seq_len, "]"));
  }
  if (options.num_microbatches <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("microbatches=", options.num_microbatches, ": must be positive"));
  }
  std::unique_ptr<GptChunk> chunk(new GptChunk(config, spec, options));
  const int64_t C = config.d_model, V = config.vocab_size;
  const double std = 0.02, proj_std = 0.02 / std::sqrt(2.0 * L);
  ParameterSet<Real>& p = chunk->params_;
  if (spec.has_embedding || spec.has_head) p.Add("wte", {V, C}, Init::kNormal, std, true);
  if (spec.has_embedding) p.Add("wpe", {config.max_seq_len, C}, Init::kNormal, 0.01, true);
  for (int l = spec.first_layer; l < spec.end_layer; ++l) {
    const std::string h = absl::StrCat("h.", l, ".");
    const LayerSpec& ls = config.layers[l];
    if (ls.attention == AttentionKind::kCausal) {
      p.Add(h + "ln_1.weight", {C}, Init::kOnes, 0, false);
      p.Add(h + "ln_1.bias", {C}, Init::kZeros, 0, false);
      p.Add(h + "attn.c_attn.weight", {3 * C, C}, Init::kNormal, std, true);
      p.Add(h + "attn.c_attn.bias", {3 * C}, Init::kZeros, 0, false);
      p.Add(h + "attn.c_proj.weight", {C, C}, Init::kNormal, proj_std, true);
      p.Add(h + "attn.c_proj.bias", {C}, Init::kZeros, 0, false);
    }
    if (ls.mlp == MlpKind::kDense) {
      p.Add(h + "ln_2.weight", {C}, Init::kOnes, 0, false);
      p.Add(h + "ln_2.bias", {C}, Init::kZeros, 0, false);
      p.Add(h + "mlp.c_fc.weight", {4 * C, C}, Init::kNormal, std, true);
      p.Add(h + "mlp.c_fc.bias", {4 * C}, Init::kZeros, 0, false);
      p.Add(h + "mlp.c_proj.weight", {C, 4 * C}, Init::kNormal, proj_std, true);
      p.Add(h + "mlp.c_proj.bias", {C}, Init::kZeros, 0, false);
    }
  }
  if (spec.has_head) {
    p.Add("ln_f.weight", {C}, Init::kOnes, 0, false);
    p.Add("ln_f.bias", {C}, Init::kZeros, 0, false);
  }
  p.Allocate(config.seed);
  // The head's copy of the tied embedding is the second copy when the embedding lives in
  // another chunk: its gradient is summed into the owner's before the optimizer step.
  if (spec.has_head && !spec.has_embedding) p.MarkTiedCopy("wte");
  if (spec.has_head && spec.has_embedding) chunk->head_wte_grad_.assign(V * C, Real(0));
  return chunk;
}

template <typename Real>
std::unique_ptr<typename GptChunk<Real>::MicrobatchState> GptChunk<Real>::NewState() const {
  const int64_t N = int64_t{options_.micro_batch_size} * options_.seq_len;
  const int64_t C = config_.d_model, V = config_.vocab_size, NH = config_.num_heads;
  const int64_t T = options_.seq_len, B = options_.micro_batch_size;
  auto st = std::make_unique<MicrobatchState>();
  st->input.resize(N * C);
  st->d_output.resize(N * C);
  st->layers.resize(spec_.end_layer - spec_.first_layer);
  bool any_mlp = false, any_attn = false;
  for (int i = 0; i < static_cast<int>(st->layers.size()); ++i) {
    LayerState& ls = st->layers[i];
    const LayerSpec& spec = config_.layers[spec_.first_layer + i];
    if (spec.attention == AttentionKind::kCausal) {
      any_attn = true;
      ls.ln1.resize(N * C), ls.ln1_mean.resize(N), ls.ln1_rstd.resize(N);
      ls.qkv.resize(N * 3 * C), ls.att.resize(B * NH * T * T), ls.atty.resize(N * C);
      ls.residual2.resize(N * C);
      ls.d_ln1.resize(N * C), ls.d_qkv.resize(N * 3 * C), ls.d_res2.resize(N * C);
    }
    if (spec.mlp == MlpKind::kDense) {
      any_mlp = true;
      ls.ln2.resize(N * C), ls.ln2_mean.resize(N), ls.ln2_rstd.resize(N);
      ls.fch.resize(N * 4 * C), ls.fch_gelu.resize(N * 4 * C), ls.out.resize(N * C);
      ls.d_ln2.resize(N * C), ls.d_fch.resize(N * 4 * C);
      if (spec.attention == AttentionKind::kNone) ls.d_res2.resize(N * C);
    }
    ls.d_in.resize(N * C);
  }
  if (any_mlp) st->scratch_gelu.resize(N * 4 * C);
  if (any_attn) st->scratch_atty.resize(N * C);
  if (spec_.has_embedding) st->tokens.resize(N);
  if (spec_.has_head) {
    st->targets.resize(N);
    st->lnf.resize(N * C), st->lnf_mean.resize(N), st->lnf_rstd.resize(N);
    st->probs.resize(N * V), st->losses.resize(N), st->d_lnf.resize(N * C);
  }
  return st;
}

template <typename Real>
int64_t GptChunk<Real>::activation_floats_per_microbatch() const {
  std::unique_ptr<MicrobatchState> st = NewState();
  auto sz = [](const auto& v) { return static_cast<int64_t>(v.size()); };
  int64_t total = sz(st->input) + sz(st->d_output) + sz(st->lnf) + sz(st->lnf_mean) +
                  sz(st->lnf_rstd) + sz(st->probs) + sz(st->losses) + sz(st->d_lnf) +
                  sz(st->scratch_gelu) + sz(st->scratch_atty);
  for (const LayerState& l : st->layers) {
    total += sz(l.ln1) + sz(l.ln1_mean) + sz(l.ln1_rstd) + sz(l.qkv) + sz(l.att) + sz(l.atty) +
             sz(l.residual2) + sz(l.ln2) + sz(l.ln2_mean) + sz(l.ln2_rstd) + sz(l.fch) +
             sz(l.fch_gelu) + sz(l.out) + sz(l.d_in) + sz(l.d_res2) + sz(l.d_ln1) +
             sz(l.d_ln2) + sz(l.d_qkv) + sz(l.d_fch);
  }
  return total;
}

template <typename Real>
absl::StatusOr<typename GptChunk<Real>::MicrobatchState*> GptChunk<Real>::Find(
    int mb, const char* what) const {
  auto it = states_.find(mb);
  if (it == states_.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, " of microbatch ", mb, " on chunk [", spec_.first_layer, ", ",
                     spec_.end_layer, ") before its forward (or after its activations were released)"));
  }
  return it->second.get();
}

template <typename Real>
absl::Status GptChunk<Real>::Forward(int mb, const int32_t* tokens, const Real* input,
                                     const int32_t* targets) {
  if (states_.count(mb)) {
    return absl::FailedPreconditionError(absl::StrCat("forward of microbatch ", mb,
                                                      " twice without a backward or release"));
  }
  if (spec_.has_embedding ? tokens == nullptr : input == nullptr) {
    return absl::InvalidArgumentError(spec_.has_embedding ? "first chunk needs tokens"
                                                          : "chunk needs an input activation");
  }
  if (spec_.has_head && targets == nullptr) {
    return absl::InvalidArgumentError("last chunk needs targets");
  }
  const int B = options_.micro_batch_size, T = options_.seq_len;
  const int C = config_.d_model, NH = config_.num_heads, V = config_.vocab_size;
  const int N = static_cast<int>(int64_t{B} * T);  // ValidateTrainConfig bounds B x T
  std::unique_ptr<MicrobatchState> owned;
  if (!free_states_.empty()) {
    owned = std::move(free_states_.back());
    free_states_.pop_back();
  } else {
    owned = NewState();
  }
  MicrobatchState& st = *owned;
  st.backward_input_done = false;
  ParameterSet<Real>& p = params_;
  if (spec_.has_embedding) {
    for (int i = 0; i < N; ++i) {
      if (tokens[i] < 0 || tokens[i] >= V) {
        return absl::InvalidArgumentError(
            absl::StrCat("token id ", tokens[i], " at position ", i, " is outside [0, ", V, ")"));
      }
    }
    std::memcpy(st.tokens.data(), tokens, sizeof(int32_t) * N);
    ops::EncoderForward(st.input.data(), tokens, p.value("wte"), p.value("wpe"), B, T, C);
  } else {
    std::memcpy(st.input.data(), input, sizeof(Real) * N * C);
  }
  const Real* x = st.input.data();
  for (int i = 0; i < static_cast<int>(st.layers.size()); ++i) {
    LayerState& ls = st.layers[i];
    const LayerSpec& spec = config_.layers[spec_.first_layer + i];
    const std::string h = absl::StrCat("h.", spec_.first_layer + i, ".");
    ls.in = x;
    if (spec.attention == AttentionKind::kCausal) {
      ops::LayerNormForward(ls.ln1.data(), ls.ln1_mean.data(), ls.ln1_rstd.data(), x,
                            p.value(h + "ln_1.weight"), p.value(h + "ln_1.bias"), N, C);
      ops::LinearForward(ls.qkv.data(), ls.ln1.data(), p.value(h + "attn.c_attn.weight"),
                         p.value(h + "attn.c_attn.bias"), N, C, 3 * C);
      ops::AttentionForward(ls.atty.data(), ls.att.data(), ls.qkv.data(), B, T, C, NH);
      // residual2 = x + atty @ c_proj^T + bias, written in two steps into residual2.
      ops::LinearForward(ls.residual2.data(), ls.atty.data(), p.value(h + "attn.c_proj.weight"),
                         p.value(h + "attn.c_proj.bias"), N, C, C);
      ops::ResidualForward(ls.residual2.data(), ls.residual2.data(), x, int64_t{N} * C);
      ls.res2 = ls.residual2.data();
    } else {
      ls.res2 = x;
    }
    if (spec.mlp == MlpKind::kDense) {
      ops::LayerNormForward(ls.ln2.data(), ls.ln2_mean.data(), ls.ln2_rstd.data(), ls.res2,
                            p.value(h + "ln_2.weight"), p.value(h + "ln_2.bias"), N, C);
      ops::LinearForward(ls.fch.data(), ls.ln2.data(), p.value(h + "mlp.c_fc.weight"),
                         p.value(h + "mlp.c_fc.bias"), N, C, 4 * C);
      ops::GeluForward(ls.fch_gelu.data(), ls.fch.data(), int64_t{N} * 4 * C);
      ops::LinearForward(ls.out.data(), ls.fch_gelu.data(), p.value(h + "mlp.c_proj.weight"),
                         p.value(h + "mlp.c_proj.bias"), N, 4 * C, C);
      ops::ResidualForward(ls.out.data(), ls.out.data(), ls.res2, int64_t{N} * C);
      ls.res3 = ls.out.data();
    } else {
      ls.res3 = ls.res2;
    }
    x = ls.res3;
  }
  if (spec_.has_head) {
    for (int i = 0; i < N; ++i) {
      if (targets[i] < 0 || targets[i] >= V) {
        return absl::InvalidArgumentError(
            absl::StrCat("target id ", targets[i], " at position ", i, " is outside [0, ", V, ")"));
      }
    }
    std::memcpy(st.targets.data(), targets, sizeof(int32_t) * N);
    ops::LayerNormForward(st.lnf.data(), st.lnf_mean.data(), st.lnf_rstd.data(), x,
                          p.value("ln_f.weight"), p.value("ln_f.bias"), N, C);
    ops::LinearForward<Real>(st.probs.data(), st.lnf.data(), p.value("wte"), nullptr, N, C, V);
    ops::SoftmaxCrossEntropyForward(st.losses.data(), st.probs.data(), st.probs.data(),
                                    st.targets.data(), N, V);
    double sum = 0.0;
    for (int i = 0; i < N; ++i) sum += st.losses[i];
    st.loss = sum / N;
  }
  states_[mb] = std::move(owned);
  return absl::OkStatus();
}

template <typename Real>
const Real* GptChunk<Real>::output(int mb) const {
  auto it = states_.find(mb);
  if (it == states_.end() || it->second->layers.empty()) return nullptr;
  return it->second->layers.back().res3;
}

template <typename Real>
double GptChunk<Real>::loss(int mb) const {
  auto it = states_.find(mb);
  return it == states_.end() ? 0.0 : it->second->loss;
}

template <typename Real>
const Real* GptChunk<Real>::probabilities(int mb) const {
  auto it = states_.find(mb);
  if (!spec_.has_head || it == states_.end() || it->second->backward_input_done) return nullptr;
  return it->second->probs.data();
}

template <typename Real>
absl::Status GptChunk<Real>::BackwardInput(int mb, const Real* dout) {
  absl::StatusOr<MicrobatchState*> found = Find(mb, "input-gradient backward");
  if (!found.ok()) return found.status();
  MicrobatchState& st = **found;
  if (st.backward_input_done) {
    return absl::FailedPreconditionError(
        absl::StrCat("input-gradient backward of microbatch ", mb, " twice"));
  }
  if (!spec_.has_head && dout == nullptr) {
    return absl::InvalidArgumentError("chunk without the head needs the output gradient");
  }
  const int B = options_.micro_batch_size, T = options_.seq_len;
  const int C = config_.d_model, NH = config_.num_heads, V = config_.vocab_size;
  const int N = static_cast<int>(int64_t{B} * T);  // ValidateTrainConfig bounds B x T
  const int64_t NC = int64_t{N} * C;
  ParameterSet<Real>& p = params_;
  auto zero = [](std::vector<Real>& v) { std::memset(v.data(), 0, v.size() * sizeof(Real)); };
  if (spec_.has_head) {
    // The step's loss is the mean over M microbatches of the mean over N tokens.
    std::vector<Real> dlosses(N, static_cast<Real>(1.0 / (double(N) * options_.num_microbatches)));
    ops::SoftmaxCrossEntropyBackwardInput(st.probs.data(), st.probs.data(), st.targets.data(),
                                          dlosses.data(), N, V);  // probs now hold dlogits
    zero(st.d_lnf);
    ops::LinearBackwardInput(st.d_lnf.data(), st.probs.data(), p.value("wte"), N, C, V);
    zero(st.d_output);
    const Real* x = st.layers.back().res3;
    ops::LayerNormBackwardInput(st.d_output.data(), st.d_lnf.data(), x, p.value("ln_f.weight"),
                                st.lnf_mean.data(), st.lnf_rstd.data(), N, C);
  } else {
    std::memcpy(st.d_output.data(), dout, sizeof(Real) * NC);
  }
  const Real* d_out = st.d_output.data();
  for (int i = static_cast<int>(st.layers.size()) - 1; i >= 0; --i) {
    LayerState& ls = st.layers[i];
    const LayerSpec& spec = config_.layers[spec_.first_layer + i];
    const std::string h = absl::StrCat("h.", spec_.first_layer + i, ".");
    ls.d_out = d_out;
    // MLP: res3 = res2 + c_proj(gelu(c_fc(ln_2(res2)))).
    const Real* d_res2;
    if (spec.mlp == MlpKind::kDense) {
      std::memcpy(ls.d_res2.data(), d_out, sizeof(Real) * NC);
      zero(st.scratch_gelu);
      ops::LinearBackwardInput(st.scratch_gelu.data(), d_out, p.value(h + "mlp.c_proj.weight"), N,
                               4 * C, C);
      zero(ls.d_fch);
      ops::GeluBackwardInput(ls.d_fch.data(), ls.fch.data(), st.scratch_gelu.data(),
                             int64_t{N} * 4 * C);
      zero(ls.d_ln2);
      ops::LinearBackwardInput(ls.d_ln2.data(), ls.d_fch.data(), p.value(h + "mlp.c_fc.weight"), N,
                               C, 4 * C);
      ops::LayerNormBackwardInput(ls.d_res2.data(), ls.d_ln2.data(), ls.res2,
                                  p.value(h + "ln_2.weight"), ls.ln2_mean.data(),
                                  ls.ln2_rstd.data(), N, C);
      d_res2 = ls.d_res2.data();
    } else {
      d_res2 = d_out;
    }
    ls.d_res2_ptr = d_res2;
    // Attention: res2 = in + c_proj(attn(c_attn(ln_1(in)))).
    std::memcpy(ls.d_in.data(), d_res2, sizeof(Real) * NC);
    if (spec.attention == AttentionKind::kCausal) {
      zero(st.scratch_atty);
      ops::LinearBackwardInput(st.scratch_atty.data(), d_res2, p.value(h + "attn.c_proj.weight"),
                               N, C, C);
      zero(ls.d_qkv);
      ops::AttentionBackwardInput(ls.d_qkv.data(), st.scratch_atty.data(), ls.qkv.data(),
                                  ls.att.data(), B, T, C, NH);
      zero(ls.d_ln1);
      ops::LinearBackwardInput(ls.d_ln1.data(), ls.d_qkv.data(),
                               p.value(h + "attn.c_attn.weight"), N, C, 3 * C);
      ops::LayerNormBackwardInput(ls.d_in.data(), ls.d_ln1.data(), ls.in,
                                  p.value(h + "ln_1.weight"), ls.ln1_mean.data(),
                                  ls.ln1_rstd.data(), N, C);
    }
    d_out = ls.d_in.data();
  }
  st.backward_input_done = true;
  return absl::OkStatus();
}

template <typename Real>
const Real* GptChunk<Real>::input_grad(int mb) const {
  auto it = states_.find(mb);
  if (it == states_.end() || !it->second->backward_input_done) return nullptr;
  return it->second->layers.front().d_in.data();
}

template <typename Real>
absl::Status GptChunk<Real>::BackwardWeights(int mb) {
  absl::StatusOr<MicrobatchState*> found = Find(mb, "weight-gradient backward");
  if (!found.ok()) return found.status();
  MicrobatchState& st = **found;
  if (!st.backward_input_done) {
    return absl::FailedPreconditionError(absl::StrCat(
        "weight-gradient backward of microbatch ", mb, " before its input-gradient backward"));
  }
  const int B = options_.micro_batch_size, T = options_.seq_len;
  const int C = config_.d_model, V = config_.vocab_size;
  const int N = static_cast<int>(int64_t{B} * T);  // ValidateTrainConfig bounds B x T
  ParameterSet<Real>& p = params_;
  if (spec_.has_head) {
    Real* dwte = head_wte_grad_.empty() ? p.grad("wte") : head_wte_grad_.data();
    ops::LinearBackwardWeights<Real>(dwte, nullptr, st.probs.data(), st.lnf.data(), N, C, V);
    ops::LayerNormBackwardWeights(p.grad("ln_f.weight"), p.grad("ln_f.bias"), st.d_lnf.data(),
                                  st.layers.back().res3, st.lnf_mean.data(), st.lnf_rstd.data(),
                                  N, C);
  }
  for (int i = static_cast<int>(st.layers.size()) - 1; i >= 0; --i) {
    LayerState& ls = st.layers[i];
    const LayerSpec& spec = config_.layers[spec_.first_layer + i];
    const std::string h = absl::StrCat("h.", spec_.first_layer + i, ".");
    if (spec.mlp == MlpKind::kDense) {
      ops::LinearBackwardWeights(p.grad(h + "mlp.c_proj.weight"), p.grad(h + "mlp.c_proj.bias"),
                                 ls.d_out, ls.fch_gelu.data(), N, 4 * C, C);
      ops::LinearBackwardWeights(p.grad(h + "mlp.c_fc.weight"), p.grad(h + "mlp.c_fc.bias"),
                                 ls.d_fch.data(), ls.ln2.data(), N, C, 4 * C);
      ops::LayerNormBackwardWeights(p.grad(h + "ln_2.weight"), p.grad(h + "ln_2.bias"),
                                    ls.d_ln2.data(), ls.res2, ls.ln2_mean.data(),
                                    ls.ln2_rstd.data(), N, C);
    }
    if (spec.attention == AttentionKind::kCausal) {
      ops::LinearBackwardWeights(p.grad(h + "attn.c_proj.weight"), p.grad(h + "attn.c_proj.bias"),
                                 ls.d_res2_ptr, ls.atty.data(), N, C, C);
      ops::LinearBackwardWeights(p.grad(h + "attn.c_attn.weight"), p.grad(h + "attn.c_attn.bias"),
                                 ls.d_qkv.data(), ls.ln1.data(), N, C, 3 * C);
      ops::LayerNormBackwardWeights(p.grad(h + "ln_1.weight"), p.grad(h + "ln_1.bias"),
                                    ls.d_ln1.data(), ls.in, ls.ln1_mean.data(),
                                    ls.ln1_rstd.data(), N, C);
    }
  }
  if (spec_.has_embedding) {
    ops::EncoderBackwardWeights(p.grad("wte"), p.grad("wpe"), st.layers.front().d_in.data(),
                                st.tokens.data(), B, T, C);
  }
  Release(mb);
  return absl::OkStatus();
}

template <typename Real>
absl::Status GptChunk<Real>::Backward(int mb, const Real* dout) {
  if (absl::Status s = BackwardInput(mb, dout); !s.ok()) return s;
  return BackwardWeights(mb);
}

template <typename Real>
void GptChunk<Real>::FoldTiedGradients() {
  if (head_wte_grad_.empty()) return;
  Real* g = params_.grad("wte");
  for (size_t i = 0; i < head_wte_grad_.size(); ++i) g[i] += head_wte_grad_[i];
  std::memset(head_wte_grad_.data(), 0, head_wte_grad_.size() * sizeof(Real));
}

template <typename Real>
void GptChunk<Real>::Release(int mb) {
  auto it = states_.find(mb);
  if (it == states_.end()) return;
  free_states_.push_back(std::move(it->second));
  states_.erase(it);
}

template class GptChunk<float>;
template class GptChunk<double>;

}  // namespace stagehand::models
