// GptChunk: GPT layers (GPT-2's, Llama-style and heterogeneous blocks) as forward / B / W
// calls over saved per-microbatch state.
// Letters: B micro-batch size, T sequence length, C width, NH heads, NKV key/value heads,
// hs head size, QKV = (NH + 2 NKV) hs, F the MLP's hidden width, FC its first linear's width
// (F, or 2F for SwiGLU), V vocabulary, N = B*T; for MoE layers E experts, K choices per token,
// R expert rows kept (<= N*K), EF / EFC an expert's widths, SF / SFC the shared expert's.
#include "models/gpt_chunk.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "ops/cpu/attention.h"
#include "ops/cpu/cross_entropy.h"
#include "ops/cpu/encoder.h"
#include "ops/cpu/gelu.h"
#include "ops/cpu/layernorm.h"
#include "ops/cpu/linear.h"
#include "ops/cpu/moe_combine.h"
#include "ops/cpu/moe_dispatch.h"
#include "ops/cpu/moe_experts.h"
#include "ops/cpu/moe_load_balancing_loss.h"
#include "ops/cpu/moe_router.h"
#include "ops/cpu/moe_z_loss.h"
#include "ops/cpu/residual.h"
#include "ops/cpu/rmsnorm.h"
#include "ops/cpu/rope.h"
#include "ops/cpu/swiglu.h"
#include "runtime/util/status_macros.h"

namespace stagehand::models {

absl::StatusOr<std::vector<ChunkSpec>> CutLayersAs(int num_layers,
                                                   const std::vector<int>& layers_per_chunk) {
  if (layers_per_chunk.empty()) return absl::InvalidArgumentError("no chunks to cut into");
  int first = 0;
  std::vector<ChunkSpec> chunks;
  for (size_t i = 0; i < layers_per_chunk.size(); ++i) {
    if (layers_per_chunk[i] <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("chunk ", i, " would hold ",
                                                     layers_per_chunk[i],
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
    return absl::InvalidArgumentError(
        absl::StrCat("chunk sizes add up to ", first, " layers but the model has ", num_layers));
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
// buffers by B and read by W. "ln" buffers hold either norm (RMSNorm leaves *_mean unused).
template <typename Real>
struct GptChunk<Real>::LayerState {
  int64_t N = 0;  // the microbatch's B x T_m tokens (its MicrobatchState's N)
  // Activations.
  std::vector<Real> ln1, ln1_mean, ln1_rstd;  // (N, C), (N), (N)
  std::vector<Real> qkv;                      // (N, QKV); q and k rotated under RoPE
  std::vector<Real> att;                      // (B, NH, T, T)
  std::vector<Real> atty;                     // (N, C)
  std::vector<Real> residual2;                // (N, C) x + attn
  std::vector<Real> ln2, ln2_mean, ln2_rstd;  // (N, C), (N), (N)
  std::vector<Real> fch, fch_act;             // (N, FC), (N, F)
  std::vector<Real> out;                      // (N, C) residual2 + mlp
  const Real* in = nullptr;                   // (N, C) the layer's input
  const Real* res2 = nullptr;                 // residual2, or `in` when there is no attention
  const Real* res3 = nullptr;                 // out, or res2 when there is no MLP
  // Gradients (B writes, W reads).
  std::vector<Real> d_in;            // (N, C) gradient of the layer input
  std::vector<Real> d_res2;          // (N, C)
  std::vector<Real> d_ln1, d_ln2;    // (N, C)
  std::vector<Real> d_qkv;           // (N, QKV)
  std::vector<Real> d_fch;           // (N, FC)
  const Real* d_out = nullptr;       // gradient of res3 (the next layer's d_in)
  const Real* d_res2_ptr = nullptr;  // d_res2, or d_out when there is no MLP
  // MoE (mlp == kMoe): router, routing, expert rows, shared expert; then their gradients.
  std::vector<Real> router_logits, router_probs;  // (N, E), (N, E)
  std::vector<int32_t> expert_index;              // (N, K)
  std::vector<Real> gates;                        // (N, K)
  ops::MoeRouting routing;
  std::vector<Real> expert_in, expert_fch, expert_act;         // (R, C), (R, EFC), (R, EF)
  std::vector<Real> expert_out;                                // (R, C)
  std::vector<Real> shared_fch, shared_act, shared_out;        // (N, SFC), (N, SF), (N, C)
  std::vector<Real> d_expert_out, d_expert_fch, d_expert_in;   // (R, C), (R, EFC), (R, C)
  std::vector<Real> d_gates, d_router_probs, d_router_logits;  // (N, K), (N, E), (N, E)
  std::vector<Real> d_shared_fch;                              // (N, SFC)
  // Expert parallelism (SetExpertExchange; S members, EL = E / S experts each, RR rows
  // received): rows sent to and received from each member (what it sends to member j are j's
  // experts' rows, contiguous in expert_in); per member, where its rows for each of this
  // member's EL experts lie in the received rows (S x (EL + 1) offsets, absolute); the
  // received rows, member-major, their experts' activations, and their gradients.
  std::vector<int64_t> ep_send_rows, ep_recv_rows;  // (S), (S)
  std::vector<int64_t> ep_offsets;                  // (S, EL + 1)
  std::vector<Real> ep_in, ep_fch, ep_act, ep_out;  // (RR, C), (RR, EFC), (RR, EF), (RR, C)
  std::vector<Real> ep_d_out, ep_d_fch, ep_d_in;    // (RR, C), (RR, EFC), (RR, C)
  double aux_loss = 0.0;  // coefficient-weighted load-balancing + z loss of this microbatch
  double balance = 0.0;   // the load-balancing loss, unweighted
};

template <typename Real>
struct GptChunk<Real>::MicrobatchState {
  bool forward_done = false;  // F ended: its output and loss are there
  bool backward_input_done = false;
  // Per pass (F, I, W): the index of its next part (GptChunk::Parts), -1 before it began.
  int next_part[3] = {-1, -1, -1};
  // The microbatch's length T_m (<= seq_len): every buffer below is sized for seq_len and
  // used over its first N = B x T_m rows ((B, NH, T_m, T_m) for att).
  int T = 0;
  std::vector<int32_t> tokens, targets;  // (N)
  std::vector<int32_t> positions;        // (N) RoPE positions (and wpe's, when reset)
  std::vector<int32_t> doc_start;        // (N) packed documents' starts; empty: none
  std::vector<uint8_t> loss_mask;        // (N) 1: the token's loss counts; empty: every one
  int64_t counted = 0;                   // tokens whose loss counts
  std::vector<Real> input;               // (N, C) encoded tokens or received activation
  std::vector<LayerState> layers;
  std::vector<Real> lnf, lnf_mean, lnf_rstd;  // (N, C), (N), (N)
  std::vector<Real> probs;                    // (N, V) probabilities; B turns them into dlogits
  std::vector<Real> losses;                   // (N)
  std::vector<Real> d_output;                 // (N, C) gradient of the chunk output
  std::vector<Real> d_lnf;                    // (N, C)
  std::vector<Real> scratch_act;              // (max rows x F of any MLP) B-only temporaries
  std::vector<Real> scratch_atty;             // (N, C)
  double loss = 0.0;
  double aux_loss = 0.0;  // sum of the MoE layers' aux_loss
  // Expert parallelism for this microbatch (a training one with an exchange set), and the
  // first failed exchange of the running part (returned by its *Part call).
  bool expert_parallel = false;
  absl::Status exchange_status;
};

namespace {

// The norm the config names, forward / I / W. LayerNorm uses mean and bias; RMSNorm neither.
template <typename Real>
void NormForward(const GptConfig& c, Real* out, Real* mean, Real* rstd, const Real* x,
                 const Real* weight, const Real* bias, int N, int C) {
  if (c.norm == NormKind::kLayerNorm) {
    ops::LayerNormForward(out, mean, rstd, x, weight, bias, N, C);
  } else {
    ops::RmsNormForward(out, rstd, x, weight, N, C, c.norm_eps);
  }
}

template <typename Real>
void NormBackwardInput(const GptConfig& c, Real* dx, const Real* dy, const Real* x,
                       const Real* weight, const Real* mean, const Real* rstd, int N, int C) {
  if (c.norm == NormKind::kLayerNorm) {
    ops::LayerNormBackwardInput(dx, dy, x, weight, mean, rstd, N, C);
  } else {
    ops::RmsNormBackwardInput(dx, dy, x, weight, rstd, N, C);
  }
}

template <typename Real>
void NormBackwardWeights(const GptConfig& c, Real* dweight, Real* dbias, const Real* dy,
                         const Real* x, const Real* mean, const Real* rstd, int N, int C) {
  if (c.norm == NormKind::kLayerNorm) {
    ops::LayerNormBackwardWeights(dweight, dbias, dy, x, mean, rstd, N, C);
  } else {
    ops::RmsNormBackwardWeights(dweight, dy, x, rstd, N, C);
  }
}

ops::AttentionShape AttentionShapeOf(const GptConfig& c, const LayerSpec& l, int B, int T) {
  return ops::AttentionShape{B, T, c.num_heads, c.KvHeads(l), c.head_size()};
}

// RoPE over the q and k heads of a (N, QKV) qkv tensor.
ops::RopeShape RopeShapeOf(const GptConfig& c, const LayerSpec& l, int64_t N) {
  ops::RopeShape shape;
  shape.N = N;
  shape.stride = static_cast<int>(c.QkvWidth(l));
  shape.offset = 0;
  shape.num_heads = c.num_heads + c.KvHeads(l);
  shape.hs = c.head_size();
  shape.base = c.rope_base;
  return shape;
}

// Adds a norm's parameters: weight, and bias for LayerNorm.
template <typename Real>
void AddNorm(ParameterSet<Real>& p, const GptConfig& c, const std::string& prefix, int64_t C) {
  p.Add(prefix + ".weight", {C}, Init::kOnes, 0, false);
  if (c.norm == NormKind::kLayerNorm) p.Add(prefix + ".bias", {C}, Init::kZeros, 0, false);
}

// Adds a linear (OC, IC) and, when the config has biases, its bias (OC).
template <typename Real>
void AddLinear(ParameterSet<Real>& p, const GptConfig& c, const std::string& prefix, int64_t OC,
               int64_t IC, double std) {
  p.Add(prefix + ".weight", {OC, IC}, Init::kNormal, std, true);
  if (c.bias) p.Add(prefix + ".bias", {OC}, Init::kZeros, 0, false);
}

// Adds the routed experts `shard` holds of MoE layer `ls` (prefix h), marked with their ids.
template <typename Real>
void AddExperts(ParameterSet<Real>& p, const GptConfig& c, const std::string& h,
                const LayerSpec& ls, const ExpertShard& shard, double std, double proj_std) {
  const int64_t C = c.d_model;
  const int first = shard.first(ls.moe.num_experts);
  for (int e = first; e < first + shard.count(ls.moe.num_experts); ++e) {
    const int before = static_cast<int>(p.infos().size());
    const std::string expert = absl::StrCat(h, "mlp.experts.", e, ".");
    AddLinear(p, c, expert + "c_fc", c.FcWidthOf(c.ExpertFfn(ls)), C, std);
    AddLinear(p, c, expert + "c_proj", C, c.ExpertFfn(ls), proj_std);
    for (int i = before; i < static_cast<int>(p.infos().size()); ++i) p.MarkExpert(i, e);
  }
}

template <typename Real>
void AddLayer(ParameterSet<Real>& p, const GptConfig& c, int layer, const ExpertShard& shard,
              double std, double proj_std) {
  const std::string h = absl::StrCat("h.", layer, ".");
  const LayerSpec& ls = c.layers[layer];
  const int64_t C = c.d_model;
  if (ls.attention == AttentionKind::kCausal) {
    AddNorm(p, c, h + "ln_1", C);
    AddLinear(p, c, h + "attn.c_attn", c.QkvWidth(ls), C, std);
    AddLinear(p, c, h + "attn.c_proj", C, C, proj_std);
  } else if (ls.attention == AttentionKind::kLinear) {
    AddNorm(p, c, h + "ln_1", C);
    AddLinear(p, c, h + "attn.linear", C, C, proj_std);
  }
  if (ls.mlp == MlpKind::kDense) {
    AddNorm(p, c, h + "ln_2", C);
    AddLinear(p, c, h + "mlp.c_fc", c.FcWidth(ls), C, std);
    AddLinear(p, c, h + "mlp.c_proj", C, c.FfnHidden(ls), proj_std);
  } else if (ls.mlp == MlpKind::kLinear) {
    AddNorm(p, c, h + "ln_2", C);
    AddLinear(p, c, h + "mlp.linear", C, C, proj_std);
  } else if (ls.mlp == MlpKind::kMoe) {
    AddNorm(p, c, h + "ln_2", C);
    p.Add(h + "mlp.router.weight", {ls.moe.num_experts, C}, Init::kNormal, std, true);
    AddExperts(p, c, h, ls, shard, std, proj_std);
    if (ls.moe.shared_expert_ffn > 0) {
      AddLinear(p, c, h + "mlp.shared_expert.c_fc", c.FcWidthOf(ls.moe.shared_expert_ffn), C, std);
      AddLinear(p, c, h + "mlp.shared_expert.c_proj", C, ls.moe.shared_expert_ffn, proj_std);
    }
  }
}

template <typename Real>
void Zero(std::vector<Real>& v) {
  std::memset(v.data(), 0, v.size() * sizeof(Real));
}

// Rows an MoE layer's experts hold at most: E x capacity, at most N x K (dropless).
int64_t MoeRowsMax(const LayerSpec& l, int64_t N) {
  const MoeSpec& m = l.moe;
  return std::min(N * m.top_k,
                  int64_t{m.num_experts} *
                      ops::MoeExpertCapacity(m.capacity_factor, N, m.num_experts, m.top_k));
}

// A shard must be a member of its size, and the size must divide every MoE layer's experts.
absl::Status ValidateExpertShard(const GptConfig& config, const ChunkSpec& spec,
                                 const ExpertShard& shard) {
  if (shard.size < 1 || shard.member < 0 || shard.member >= shard.size) {
    return absl::InvalidArgumentError(
        absl::StrCat("expert shard: member ", shard.member, " of a group of ", shard.size));
  }
  for (int l = spec.first_layer; l < spec.end_layer; ++l) {
    const LayerSpec& layer = config.layers[l];
    if (layer.mlp == MlpKind::kMoe && layer.moe.num_experts % shard.size != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--ep=", shard.size, " does not divide layer ", l, "'s ", layer.moe.num_experts,
          " experts: every expert-parallel rank holds the same number of experts"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

template <typename Real>
GptChunk<Real>::GptChunk(const GptConfig& config, const ChunkSpec& spec,
                         const ChunkOptions& options)
    : config_(config),
      spec_(spec),
      options_(options),
      step_microbatches_(options.num_microbatches) {}

template <typename Real>
GptChunk<Real>::~GptChunk() = default;

template <typename Real>
absl::StatusOr<std::unique_ptr<GptChunk<Real>>> GptChunk<Real>::Create(
    const GptConfig& config, const ChunkSpec& spec, const ChunkOptions& options) {
  if (absl::Status s = ValidateGptConfig(config); !s.ok()) return s;
  const int L = static_cast<int>(config.layers.size());
  if (spec.first_layer < 0 || spec.end_layer > L || spec.first_layer >= spec.end_layer) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk layers [", spec.first_layer, ", ", spec.end_layer,
                     ") are not a non-empty range of the ", L, " layers"));
  }
  if (options.micro_batch_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("micro_batch_size=", options.micro_batch_size, ": must be positive"));
  }
  if (options.seq_len <= 0 || options.seq_len > config.max_seq_len) {
    return absl::InvalidArgumentError(
        absl::StrCat("seq_len=", options.seq_len, ": must be in [1, ", config.max_seq_len, "]"));
  }
  if (options.num_microbatches <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("microbatches=", options.num_microbatches, ": must be positive"));
  }
  RETURN_IF_ERROR(ValidateExpertShard(config, spec, options.expert_shard));
  std::unique_ptr<GptChunk> chunk(new GptChunk(config, spec, options));
  const int64_t C = config.d_model, V = config.vocab_size;
  const double std = 0.02, proj_std = 0.02 / std::sqrt(2.0 * L);
  const bool tied = config.tied_head;
  ParameterSet<Real>& p = chunk->params_;
  if (spec.has_embedding || (spec.has_head && tied)) {
    p.Add("wte", {V, C}, Init::kNormal, std, true);
  }
  if (spec.has_embedding && config.positions == PositionKind::kLearned) {
    p.Add("wpe", {config.max_seq_len, C}, Init::kNormal, 0.01, true);
  }
  for (int l = spec.first_layer; l < spec.end_layer; ++l) {
    AddLayer(p, config, l, options.expert_shard, std, proj_std);
  }
  if (spec.has_head) {
    AddNorm(p, config, "ln_f", C);
    if (!tied) p.Add("lm_head.weight", {V, C}, Init::kNormal, std, true);
  }
  p.Allocate(config.seed);
  // The head's copy of the tied embedding is the second copy when the embedding lives in
  // another chunk: its gradient is summed into the owner's before the optimizer step.
  if (tied && spec.has_head && !spec.has_embedding) p.MarkTiedCopy("wte");
  if (tied && spec.has_head && spec.has_embedding) chunk->head_wte_grad_.assign(V * C, Real(0));
  for (ChunkPass pass :
       {ChunkPass::kForward, ChunkPass::kBackwardInput, ChunkPass::kBackwardWeights}) {
    chunk->pass_parts_[static_cast<int>(pass)] = chunk->Parts(pass);
  }
  return chunk;
}

template <typename Real>
const Real* GptChunk<Real>::OptionalValue(const std::string& name) const {
  return params_.contains(name) ? params_.value(name) : nullptr;
}

template <typename Real>
Real* GptChunk<Real>::OptionalGrad(const std::string& name) {
  return params_.contains(name) ? params_.grad(name) : nullptr;
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
  int64_t max_ffn = 0;
  bool any_attn = false;
  for (int i = 0; i < static_cast<int>(st->layers.size()); ++i) {
    LayerState& ls = st->layers[i];
    const LayerSpec& spec = config_.layers[spec_.first_layer + i];
    if (spec.attention != AttentionKind::kNone) {
      ls.ln1.resize(N * C), ls.ln1_mean.resize(N), ls.ln1_rstd.resize(N);
      ls.residual2.resize(N * C);
      ls.d_ln1.resize(N * C), ls.d_res2.resize(N * C);
    }
    if (spec.attention == AttentionKind::kCausal) {
      any_attn = true;
      const int64_t QKV = config_.QkvWidth(spec);
      ls.qkv.resize(N * QKV), ls.att.resize(B * NH * T * T), ls.atty.resize(N * C);
      ls.d_qkv.resize(N * QKV);
    }
    if (spec.mlp != MlpKind::kNone) {
      ls.ln2.resize(N * C), ls.ln2_mean.resize(N), ls.ln2_rstd.resize(N), ls.out.resize(N * C);
      ls.d_ln2.resize(N * C), ls.d_res2.resize(N * C);
    }
    if (spec.mlp == MlpKind::kDense) {
      const int64_t F = config_.FfnHidden(spec);
      ls.fch.resize(N * config_.FcWidth(spec)), ls.fch_act.resize(N * F);
      ls.d_fch.resize(N * config_.FcWidth(spec));
      max_ffn = std::max(max_ffn, N * F);
    }
    if (spec.mlp == MlpKind::kMoe) max_ffn = std::max(max_ffn, AllocateMoe(ls, spec));
    ls.d_in.resize(N * C);
  }
  st->scratch_act.resize(max_ffn);
  if (any_attn) st->scratch_atty.resize(N * C);
  if (any_attn && config_.positions == PositionKind::kRope) {
    st->positions.resize(N);  // set per microbatch by SetDocuments
  }
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
                  sz(st->scratch_act) + sz(st->scratch_atty);
  for (const LayerState& l : st->layers) {
    total += sz(l.ln1) + sz(l.ln1_mean) + sz(l.ln1_rstd) + sz(l.qkv) + sz(l.att) + sz(l.atty) +
             sz(l.residual2) + sz(l.ln2) + sz(l.ln2_mean) + sz(l.ln2_rstd) + sz(l.fch) +
             sz(l.fch_act) + sz(l.out) + sz(l.d_in) + sz(l.d_res2) + sz(l.d_ln1) + sz(l.d_ln2) +
             sz(l.d_qkv) + sz(l.d_fch) + sz(l.router_logits) + sz(l.router_probs) + sz(l.gates) +
             sz(l.expert_in) + sz(l.expert_fch) + sz(l.expert_act) + sz(l.expert_out) +
             sz(l.shared_fch) + sz(l.shared_act) + sz(l.shared_out) + sz(l.d_expert_out) +
             sz(l.d_expert_fch) + sz(l.d_expert_in) + sz(l.d_gates) + sz(l.d_router_probs) +
             sz(l.d_router_logits) + sz(l.d_shared_fch);
  }
  return total;
}

template <typename Real>
absl::StatusOr<typename GptChunk<Real>::MicrobatchState*> GptChunk<Real>::Find(
    int mb, const char* what) const {
  absl::MutexLock lock(&states_mu_);
  auto it = states_.find(mb);
  if (it == states_.end() || !it->second->forward_done) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, " of microbatch ", mb, " on chunk [", spec_.first_layer, ", ",
                     spec_.end_layer, ") before its forward ",
                     it == states_.end() ? "(or after its activations were released)" : "ended"));
  }
  return it->second.get();
}

template <typename Real>
bool GptChunk<Real>::IsMoeLayer(int i) const {
  return config_.layers[spec_.first_layer + i].mlp == MlpKind::kMoe;
}

// What a pass over layer i of a microbatch reads: its N = B x T rows (ValidateTrainConfig
// bounds them), the width C, the layer's state and spec, and its parameters' prefix "h.<l>.".
template <typename Real>
struct GptChunk<Real>::LayerView {
  int N = 0, C = 0;
  LayerState& ls;
  const LayerSpec& spec;
  std::string h;
};

template <typename Real>
typename GptChunk<Real>::LayerView GptChunk<Real>::ViewOf(MicrobatchState& st, int i) const {
  const int layer = spec_.first_layer + i;
  return LayerView{static_cast<int>(int64_t{options_.micro_batch_size} * st.T), config_.d_model,
                   st.layers[i], config_.layers[layer], absl::StrCat("h.", layer, ".")};
}

// Norm 1, attention and its residual (res2 = x + attn), then norm 2 of res2.
template <typename Real>
void GptChunk<Real>::AttentionForward(MicrobatchState& st, int i, const Real* x) {
  const int B = options_.micro_batch_size, T = st.T;
  const auto [N, C, ls, spec, h] = ViewOf(st, i);
  const GptConfig& c = config_;
  ParameterSet<Real>& p = params_;
  ls.in = x;
  if (spec.attention != AttentionKind::kNone) {
    NormForward(c, ls.ln1.data(), ls.ln1_mean.data(), ls.ln1_rstd.data(), x,
                p.value(h + "ln_1.weight"), OptionalValue(h + "ln_1.bias"), N, C);
  }
  if (spec.attention == AttentionKind::kCausal) {
    const int QKV = static_cast<int>(c.QkvWidth(spec));
    ops::LinearForward(ls.qkv.data(), ls.ln1.data(), p.value(h + "attn.c_attn.weight"),
                       OptionalValue(h + "attn.c_attn.bias"), N, C, QKV);
    if (c.positions == PositionKind::kRope) {
      ops::RopeForward(ls.qkv.data(), st.positions.data(), RopeShapeOf(c, spec, N));
    }
    ops::GroupedAttentionForward(ls.atty.data(), ls.att.data(), ls.qkv.data(),
                                 AttentionShapeOf(c, spec, B, T),
                                 st.doc_start.empty() ? nullptr : st.doc_start.data());
    // residual2 = x + atty @ c_proj^T + bias, written in two steps into residual2.
    ops::LinearForward(ls.residual2.data(), ls.atty.data(), p.value(h + "attn.c_proj.weight"),
                       OptionalValue(h + "attn.c_proj.bias"), N, C, C);
  } else if (spec.attention == AttentionKind::kLinear) {
    ops::LinearForward(ls.residual2.data(), ls.ln1.data(), p.value(h + "attn.linear.weight"),
                       OptionalValue(h + "attn.linear.bias"), N, C, C);
  }
  if (spec.attention != AttentionKind::kNone) {
    ops::ResidualForward(ls.residual2.data(), ls.residual2.data(), x, int64_t{N} * C);
  }
  ls.res2 = spec.attention != AttentionKind::kNone ? ls.residual2.data() : x;
  if (spec.mlp != MlpKind::kNone) {
    NormForward(c, ls.ln2.data(), ls.ln2_mean.data(), ls.ln2_rstd.data(), ls.res2,
                p.value(h + "ln_2.weight"), OptionalValue(h + "ln_2.bias"), N, C);
  }
}

// The MLP's residual: res3 = res2 + mlp (or res2 without an MLP).
template <typename Real>
void GptChunk<Real>::MlpResidualForward(MicrobatchState& st, int i) {
  const int64_t N = int64_t{options_.micro_batch_size} * st.T;
  LayerState& ls = st.layers[i];
  const LayerSpec& spec = config_.layers[spec_.first_layer + i];
  if (spec.mlp != MlpKind::kNone) {
    ops::ResidualForward(ls.out.data(), ls.out.data(), ls.res2, N * config_.d_model);
  }
  ls.res3 = spec.mlp != MlpKind::kNone ? ls.out.data() : ls.res2;
}

template <typename Real>
void GptChunk<Real>::LayerForward(MicrobatchState& st, int i, const Real* x) {
  if (IsMoeLayer(i)) {  // the same parts a sub-step schedule runs one by one
    for (LayerPart part : {LayerPart::kAttention, LayerPart::kDispatch, LayerPart::kExperts,
                           LayerPart::kCombine, LayerPart::kRest}) {
      LayerForwardPart(st, i, part);
    }
    return;
  }
  const auto [N, C, ls, spec, h] = ViewOf(st, i);
  const GptConfig& c = config_;
  ParameterSet<Real>& p = params_;
  AttentionForward(st, i, x);
  if (spec.mlp == MlpKind::kDense) {
    const int F = c.FfnHidden(spec), FC = static_cast<int>(c.FcWidth(spec));
    ops::LinearForward(ls.fch.data(), ls.ln2.data(), p.value(h + "mlp.c_fc.weight"),
                       OptionalValue(h + "mlp.c_fc.bias"), N, C, FC);
    if (c.activation == ActivationKind::kGelu) {
      ops::GeluForward(ls.fch_act.data(), ls.fch.data(), int64_t{N} * F);
    } else {
      ops::SwiGluForward(ls.fch_act.data(), ls.fch.data(), N, F);
    }
    ops::LinearForward(ls.out.data(), ls.fch_act.data(), p.value(h + "mlp.c_proj.weight"),
                       OptionalValue(h + "mlp.c_proj.bias"), N, F, C);
  } else if (spec.mlp == MlpKind::kLinear) {
    ops::LinearForward(ls.out.data(), ls.ln2.data(), p.value(h + "mlp.linear.weight"),
                       OptionalValue(h + "mlp.linear.bias"), N, C, C);
  }
  MlpResidualForward(st, i);
}

template <typename Real>
void GptChunk<Real>::LayerForwardPart(MicrobatchState& st, int i, LayerPart part) {
  const Real* x = i == 0 ? st.input.data() : st.layers[i - 1].res3;
  if (!IsMoeLayer(i)) {  // whole, as kRest
    LayerForward(st, i, x);
    return;
  }
  const auto [N, C, ls, spec, h] = ViewOf(st, i);
  switch (part) {
    case LayerPart::kAttention:
      AttentionForward(st, i, x);
      MoeRouteForward(ls, spec, h);
      break;
    case LayerPart::kDispatch:
      if (st.expert_parallel) {
        st.exchange_status.Update(ExpertParallelDispatch(ls, spec));
      } else {
        MoeDispatchPart(ls);
      }
      break;
    case LayerPart::kExperts:
      if (st.expert_parallel) {
        ExpertParallelExperts(ls, spec, h);
      } else {
        MoeExpertsPart(ls, spec, h);
      }
      break;
    case LayerPart::kCombine:
      if (st.expert_parallel) {
        st.exchange_status.Update(ExpertParallelCombine(ls));
      } else {
        MoeCombinePart(ls);
      }
      break;
    case LayerPart::kRest:
      st.aux_loss += MoeRestForward(ls, spec, h);
      MlpResidualForward(st, i);
      break;
  }
}

template <typename Real>
int64_t GptChunk<Real>::AllocateMoe(LayerState& ls, const LayerSpec& spec) const {
  const int64_t N = int64_t{options_.micro_batch_size} * options_.seq_len, C = config_.d_model;
  const int64_t E = spec.moe.num_experts, K = spec.moe.top_k, R = MoeRowsMax(spec, N);
  const int64_t EF = config_.ExpertFfn(spec), EFC = config_.FcWidthOf(config_.ExpertFfn(spec));
  ls.router_logits.resize(N * E), ls.router_probs.resize(N * E);
  ls.expert_index.resize(N * K), ls.gates.resize(N * K);
  ls.expert_in.resize(R * C), ls.expert_fch.resize(R * EFC), ls.expert_act.resize(R * EF);
  ls.expert_out.resize(R * C);
  ls.d_expert_out.resize(R * C), ls.d_expert_fch.resize(R * EFC), ls.d_expert_in.resize(R * C);
  ls.d_gates.resize(N * K), ls.d_router_probs.resize(N * E), ls.d_router_logits.resize(N * E);
  int64_t scratch = R * EF;
  if (const int64_t SF = spec.moe.shared_expert_ffn; SF > 0) {
    ls.shared_fch.resize(N * config_.FcWidthOf(SF)), ls.shared_act.resize(N * SF);
    ls.shared_out.resize(N * C), ls.d_shared_fch.resize(N * config_.FcWidthOf(SF));
    scratch = std::max(scratch, N * SF);
  }
  return scratch;
}

template <typename Real>
std::vector<std::string> GptChunk<Real>::ExpertModules(const std::string& h, bool shared,
                                                       int num_experts) {
  if (shared) return {h + "mlp.shared_expert."};
  std::vector<std::string> modules;
  for (int e = 0; e < num_experts; ++e) modules.push_back(absl::StrCat(h, "mlp.experts.", e, "."));
  return modules;
}

template <typename Real>
std::vector<ops::MoeExpertTensors<const Real>> GptChunk<Real>::ExpertValues(
    const std::vector<std::string>& modules) const {
  std::vector<ops::MoeExpertTensors<const Real>> tensors;
  for (const std::string& m : modules) {
    tensors.push_back({params_.value(m + "c_fc.weight"), OptionalValue(m + "c_fc.bias"),
                       params_.value(m + "c_proj.weight"), OptionalValue(m + "c_proj.bias")});
  }
  return tensors;
}

template <typename Real>
std::vector<ops::MoeExpertTensors<Real>> GptChunk<Real>::ExpertGrads(
    const std::vector<std::string>& modules) {
  std::vector<ops::MoeExpertTensors<Real>> tensors;
  for (const std::string& m : modules) {
    tensors.push_back({params_.grad(m + "c_fc.weight"), OptionalGrad(m + "c_fc.bias"),
                       params_.grad(m + "c_proj.weight"), OptionalGrad(m + "c_proj.bias")});
  }
  return tensors;
}

// MoE F, attn's end: the router on ln2, top-k, and the routing (rows per expert, drops).
template <typename Real>
void GptChunk<Real>::MoeRouteForward(LayerState& ls, const LayerSpec& spec, const std::string& h) {
  const int64_t N = ls.N;
  const int C = config_.d_model, E = spec.moe.num_experts, K = spec.moe.top_k;
  ops::LinearForward<Real>(ls.router_logits.data(), ls.ln2.data(),
                           params_.value(h + "mlp.router.weight"), nullptr, static_cast<int>(N), C,
                           E);
  ops::MoeRouterForward(ls.router_probs.data(), ls.expert_index.data(), ls.gates.data(),
                        ls.router_logits.data(), N, E, K);
  ops::BuildMoeRouting(&ls.routing, ls.expert_index.data(), N, E, K,
                       ops::MoeExpertCapacity(spec.moe.capacity_factor, N, E, K));
}

// MoE F, dispatch: ln2's rows to their experts' rows.
template <typename Real>
void GptChunk<Real>::MoeDispatchPart(LayerState& ls) {
  ops::MoeDispatchForward(ls.expert_in.data(), ls.ln2.data(), ls.routing, config_.d_model);
}

// MoE F, experts: every expert's MLP on its rows.
template <typename Real>
void GptChunk<Real>::MoeExpertsPart(LayerState& ls, const LayerSpec& spec, const std::string& h) {
  const ops::MoeExpertShape shape{config_.d_model, config_.ExpertFfn(spec),
                                  config_.activation == ActivationKind::kSwiGlu};
  ops::MoeExpertsForward(ls.expert_out.data(), ls.expert_fch.data(), ls.expert_act.data(),
                         ls.expert_in.data(),
                         ExpertValues(ExpertModules(h, false, spec.moe.num_experts)),
                         ls.routing.expert_offsets.data(), shape);
}

// MoE F, combine: expert rows back to tokens, gate-weighted, into ls.out.
template <typename Real>
void GptChunk<Real>::MoeCombinePart(LayerState& ls) {
  const int64_t N = ls.N;
  ops::MoeCombineForward(ls.out.data(), ls.expert_out.data(), ls.gates.data(), ls.routing, N,
                         config_.d_model);
}

// MoE F, rest: the shared expert (sees every token) into ls.out, and the auxiliary losses
// (their gradients join in I). Returns the layer's coefficient-weighted auxiliary loss.
template <typename Real>
double GptChunk<Real>::MoeRestForward(LayerState& ls, const LayerSpec& spec, const std::string& h) {
  const int64_t N = ls.N;
  const int C = config_.d_model, E = spec.moe.num_experts, K = spec.moe.top_k;
  if (spec.moe.shared_expert_ffn > 0) {
    const ops::MoeExpertShape shared{C, spec.moe.shared_expert_ffn,
                                     config_.activation == ActivationKind::kSwiGlu};
    const int64_t all[2] = {0, N};
    ops::MoeExpertsForward(ls.shared_out.data(), ls.shared_fch.data(), ls.shared_act.data(),
                           ls.ln2.data(), ExpertValues(ExpertModules(h, true, 1)), all, shared);
    ops::ResidualForward(ls.out.data(), ls.out.data(), ls.shared_out.data(), N * C);
  }
  ls.balance = ops::MoeLoadBalancingLossForward(ls.router_probs.data(),
                                                ls.routing.tokens_per_expert.data(), N, E, K);
  double aux = spec.moe.aux_loss_coeff * ls.balance;
  if (spec.moe.z_loss_coeff > 0) {
    aux += spec.moe.z_loss_coeff * ops::MoeZLossForward(ls.router_logits.data(), N, E);
  }
  ls.aux_loss = aux;
  return aux;
}

// MoE I, rest: d_ln2 starts with the shared expert's input gradient (ls.d_out set).
template <typename Real>
void GptChunk<Real>::MoeRestBackwardInput(MicrobatchState& st, LayerState& ls,
                                          const LayerSpec& spec, const std::string& h) {
  const int64_t N = int64_t{options_.micro_batch_size} * st.T;
  Zero(ls.d_ln2);
  if (spec.moe.shared_expert_ffn > 0) {
    const ops::MoeExpertShape shared{config_.d_model, spec.moe.shared_expert_ffn,
                                     config_.activation == ActivationKind::kSwiGlu};
    const int64_t all[2] = {0, N};
    ops::MoeExpertsBackwardInput(ls.d_ln2.data(), ls.d_shared_fch.data(), st.scratch_act.data(),
                                 ls.d_out, ls.shared_fch.data(),
                                 ExpertValues(ExpertModules(h, true, 1)), all, shared);
  }
}

// MoE I, combine: the expert rows' and the gates' gradients.
template <typename Real>
void GptChunk<Real>::MoeCombineBackwardPart(LayerState& ls) {
  const int64_t N = ls.N;
  ops::MoeCombineBackwardInput(ls.d_expert_out.data(), ls.d_gates.data(), ls.d_out,
                               ls.expert_out.data(), ls.gates.data(), ls.routing, N,
                               config_.d_model);
}

// MoE I, experts: the expert rows' input gradients.
template <typename Real>
void GptChunk<Real>::MoeExpertsBackwardPart(MicrobatchState& st, LayerState& ls,
                                            const LayerSpec& spec, const std::string& h) {
  const ops::MoeExpertShape shape{config_.d_model, config_.ExpertFfn(spec),
                                  config_.activation == ActivationKind::kSwiGlu};
  Zero(ls.d_expert_in);
  ops::MoeExpertsBackwardInput(ls.d_expert_in.data(), ls.d_expert_fch.data(), st.scratch_act.data(),
                               ls.d_expert_out.data(), ls.expert_fch.data(),
                               ExpertValues(ExpertModules(h, false, spec.moe.num_experts)),
                               ls.routing.expert_offsets.data(), shape);
}

// MoE I, dispatch: the expert rows' gradients back to tokens, into d_ln2.
template <typename Real>
void GptChunk<Real>::MoeDispatchBackwardPart(LayerState& ls) {
  const int64_t N = ls.N;
  ops::MoeDispatchBackwardInput(ls.d_ln2.data(), ls.d_expert_in.data(), ls.routing, N,
                                config_.d_model);
}

// MoE I, attn's start: the router (gates and the auxiliary losses to probabilities, then to
// logits, each auxiliary gradient scaled 1/M like the loss) into d_ln2; the layer's stats.
template <typename Real>
void GptChunk<Real>::MoeRouterBackwardInput(LayerState& ls, const LayerSpec& spec,
                                            const std::string& h, int layer) {
  const int64_t N = ls.N;
  const int C = config_.d_model, E = spec.moe.num_experts, K = spec.moe.top_k;
  const double per_microbatch = 1.0 / step_microbatches_;  // the step's M, as for the loss
  Zero(ls.d_router_probs);
  ops::MoeGatesBackwardInput(ls.d_router_probs.data(), ls.d_gates.data(), ls.expert_index.data(), N,
                             E, K);
  if (spec.moe.aux_loss_coeff > 0) {
    ops::MoeLoadBalancingLossBackwardInput(ls.d_router_probs.data(),
                                           ls.routing.tokens_per_expert.data(), N, E, K,
                                           spec.moe.aux_loss_coeff * per_microbatch);
  }
  Zero(ls.d_router_logits);
  ops::MoeRouterBackwardInput(ls.d_router_logits.data(), ls.d_router_probs.data(),
                              ls.router_probs.data(), N, E);
  if (spec.moe.z_loss_coeff > 0) {
    ops::MoeZLossBackwardInput(ls.d_router_logits.data(), ls.router_logits.data(), N, E,
                               spec.moe.z_loss_coeff * per_microbatch);
  }
  ops::LinearBackwardInput<Real>(ls.d_ln2.data(), ls.d_router_logits.data(),
                                 params_.value(h + "mlp.router.weight"), static_cast<int>(N), C, E);
  // Tokens per expert of the microbatches that train (evaluation never reaches B).
  MoeLayerStats& stats = moe_stats_[layer];
  stats.tokens_per_expert.resize(E, 0);
  for (int e = 0; e < E; ++e) stats.tokens_per_expert[e] += ls.routing.tokens_per_expert[e];
  stats.dropped += ls.routing.dropped;
  stats.aux_loss += ls.aux_loss;
  stats.balance += ls.balance;
  ++stats.microbatches;
}

// MoE W, rest: the shared expert's weight gradients.
template <typename Real>
void GptChunk<Real>::MoeSharedBackwardWeights(LayerState& ls, const LayerSpec& spec,
                                              const std::string& h) {
  if (spec.moe.shared_expert_ffn <= 0) return;
  const int64_t N = ls.N;
  const ops::MoeExpertShape shared{config_.d_model, spec.moe.shared_expert_ffn,
                                   config_.activation == ActivationKind::kSwiGlu};
  const int64_t all[2] = {0, N};
  ops::MoeExpertsBackwardWeights(ExpertGrads(ExpertModules(h, true, 1)), ls.d_out,
                                 ls.shared_act.data(), ls.d_shared_fch.data(), ls.ln2.data(), all,
                                 shared);
}

// MoE W, experts: every expert's weight gradients from its rows.
template <typename Real>
void GptChunk<Real>::MoeExpertsBackwardWeightsPart(LayerState& ls, const LayerSpec& spec,
                                                   const std::string& h) {
  const ops::MoeExpertShape shape{config_.d_model, config_.ExpertFfn(spec),
                                  config_.activation == ActivationKind::kSwiGlu};
  ops::MoeExpertsBackwardWeights(ExpertGrads(ExpertModules(h, false, spec.moe.num_experts)),
                                 ls.d_expert_out.data(), ls.expert_act.data(),
                                 ls.d_expert_fch.data(), ls.expert_in.data(),
                                 ls.routing.expert_offsets.data(), shape);
}

// MoE W, attn's start: the router's weight gradient.
template <typename Real>
void GptChunk<Real>::MoeRouterBackwardWeights(LayerState& ls, const LayerSpec& spec,
                                              const std::string& h) {
  const int64_t N = ls.N;
  ops::LinearBackwardWeights<Real>(params_.grad(h + "mlp.router.weight"), nullptr,
                                   ls.d_router_logits.data(), ls.ln2.data(), static_cast<int>(N),
                                   config_.d_model, spec.moe.num_experts);
}

// Expert parallelism (SetExpertExchange). Letters: S members, EL = E / S experts on each,
// RR rows this member received. Member j's rows for this member's experts arrive as one block
// (expert-major within it), and the blocks lie in member order; each block is run (and its
// weight gradients accumulated) as its own call, in member order.

template <typename Real>
absl::Status GptChunk<Real>::SetExpertExchange(ExpertExchange* exchange) {
  if (exchange == nullptr) {
    expert_exchange_ = nullptr;
    return absl::OkStatus();
  }
  if (!std::is_same_v<Real, float>) {
    return absl::InvalidArgumentError("expert parallelism exchanges float32 rows only");
  }
  if (exchange->size() < 1 || exchange->member() < 0 || exchange->member() >= exchange->size()) {
    return absl::InvalidArgumentError(absl::StrCat("expert exchange: member ", exchange->member(),
                                                   " of a group of ", exchange->size()));
  }
  RETURN_IF_ERROR(ValidateExpertShard(config_, spec_, {exchange->member(), exchange->size()}));
  const ExpertShard& shard = options_.expert_shard;
  if (shard.size > 1 && (exchange->size() != shard.size || exchange->member() != shard.member)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expert exchange: member ", exchange->member(), " of ", exchange->size(),
        " for a chunk holding the experts of member ", shard.member, " of ", shard.size));
  }
  expert_exchange_ = exchange;
  return absl::OkStatus();
}

template <typename Real>
std::vector<std::string> GptChunk<Real>::LocalExpertModules(const std::string& h,
                                                            int num_experts) const {
  const int local = num_experts / expert_exchange_->size();
  const int first = expert_exchange_->member() * local;
  std::vector<std::string> modules;
  for (int e = first; e < first + local; ++e) {
    modules.push_back(absl::StrCat(h, "mlp.experts.", e, "."));
  }
  return modules;
}

template <typename Real>
absl::Status GptChunk<Real>::ExchangeRows(const Real* in, const std::vector<int64_t>& send_rows,
                                          Real* out, const std::vector<int64_t>& recv_rows) {
  if constexpr (std::is_same_v<Real, float>) {
    const int64_t C = config_.d_model;
    std::vector<int64_t> send(send_rows.size()), recv(recv_rows.size());
    int64_t sent = 0, received = 0;
    for (size_t j = 0; j < send.size(); ++j) sent += send[j] = send_rows[j] * C;
    for (size_t j = 0; j < recv.size(); ++j) received += recv[j] = recv_rows[j] * C;
    return expert_exchange_->AllToAllV(absl::MakeConstSpan(in, sent), send,
                                       absl::MakeSpan(out, received), recv);
  } else {
    return absl::InternalError("expert parallelism exchanges float32 rows only");
  }
}

// F, dispatch: the local gather into expert_in, then the rows' counts per expert and the rows
// themselves to their experts' members.
template <typename Real>
absl::Status GptChunk<Real>::ExpertParallelDispatch(LayerState& ls, const LayerSpec& spec) {
  if constexpr (std::is_same_v<Real, float>) {
    MoeDispatchPart(ls);
    const int S = expert_exchange_->size(), E = spec.moe.num_experts, EL = E / S;
    const std::vector<int64_t>& offsets = ls.routing.expert_offsets;
    std::vector<float> send_counts(E), recv_counts(E);
    for (int e = 0; e < E; ++e) send_counts[e] = static_cast<float>(offsets[e + 1] - offsets[e]);
    const std::vector<int64_t> per_member(S, EL);
    RETURN_IF_ERROR(expert_exchange_->AllToAllV(send_counts, per_member,
                                                absl::MakeSpan(recv_counts), per_member));
    ls.ep_send_rows.assign(S, 0);
    ls.ep_recv_rows.assign(S, 0);
    ls.ep_offsets.assign(int64_t{S} * (EL + 1), 0);
    int64_t at = 0;
    for (int j = 0; j < S; ++j) {
      ls.ep_send_rows[j] = offsets[(j + 1) * EL] - offsets[j * EL];
      ls.ep_offsets[j * (EL + 1)] = at;
      for (int l = 0; l < EL; ++l) {
        at += static_cast<int64_t>(recv_counts[j * EL + l]);
        ls.ep_offsets[j * (EL + 1) + l + 1] = at;
      }
      ls.ep_recv_rows[j] = at - ls.ep_offsets[j * (EL + 1)];
    }
    ls.ep_in.resize(at * config_.d_model);
    return ExchangeRows(ls.expert_in.data(), ls.ep_send_rows, ls.ep_in.data(), ls.ep_recv_rows);
  } else {
    return absl::InternalError("expert parallelism exchanges float32 rows only");
  }
}

// F, experts: this member's experts on every member's rows, block by block.
template <typename Real>
void GptChunk<Real>::ExpertParallelExperts(LayerState& ls, const LayerSpec& spec,
                                           const std::string& h) {
  const ops::MoeExpertShape shape{config_.d_model, config_.ExpertFfn(spec),
                                  config_.activation == ActivationKind::kSwiGlu};
  const int64_t RR = static_cast<int64_t>(ls.ep_in.size()) / config_.d_model;
  ls.ep_fch.resize(RR * shape.FC()), ls.ep_act.resize(RR * shape.F), ls.ep_out.resize(RR * shape.C);
  const auto experts = ExpertValues(LocalExpertModules(h, spec.moe.num_experts));
  const int S = expert_exchange_->size(), EL = static_cast<int>(experts.size());
  for (int j = 0; j < S; ++j) {
    ops::MoeExpertsForward(ls.ep_out.data(), ls.ep_fch.data(), ls.ep_act.data(), ls.ep_in.data(),
                           experts, ls.ep_offsets.data() + j * (EL + 1), shape);
  }
}

// F, combine: the results back to the rows' members, then the gate-weighted sum as without
// expert parallelism.
template <typename Real>
absl::Status GptChunk<Real>::ExpertParallelCombine(LayerState& ls) {
  RETURN_IF_ERROR(
      ExchangeRows(ls.ep_out.data(), ls.ep_recv_rows, ls.expert_out.data(), ls.ep_send_rows));
  MoeCombinePart(ls);
  return absl::OkStatus();
}

// I, combine (after MoeCombineBackwardPart): the rows' output gradients to their experts.
template <typename Real>
absl::Status GptChunk<Real>::ExpertParallelCombineBackward(LayerState& ls) {
  ls.ep_d_out.resize(ls.ep_in.size());
  return ExchangeRows(ls.d_expert_out.data(), ls.ep_send_rows, ls.ep_d_out.data(), ls.ep_recv_rows);
}

// I, experts: the received rows' input gradients, block by block.
template <typename Real>
void GptChunk<Real>::ExpertParallelExpertsBackward(LayerState& ls, const LayerSpec& spec,
                                                   const std::string& h) {
  const ops::MoeExpertShape shape{config_.d_model, config_.ExpertFfn(spec),
                                  config_.activation == ActivationKind::kSwiGlu};
  const int64_t RR = static_cast<int64_t>(ls.ep_in.size()) / config_.d_model;
  ls.ep_d_fch.resize(RR * shape.FC());
  ls.ep_d_in.assign(RR * shape.C, Real{0});
  std::vector<Real> d_act(RR * shape.F);
  const auto experts = ExpertValues(LocalExpertModules(h, spec.moe.num_experts));
  const int S = expert_exchange_->size(), EL = static_cast<int>(experts.size());
  for (int j = 0; j < S; ++j) {
    ops::MoeExpertsBackwardInput(ls.ep_d_in.data(), ls.ep_d_fch.data(), d_act.data(),
                                 ls.ep_d_out.data(), ls.ep_fch.data(), experts,
                                 ls.ep_offsets.data() + j * (EL + 1), shape);
  }
}

// I, dispatch (before MoeDispatchBackwardPart): the rows' input gradients back to their
// members' d_expert_in.
template <typename Real>
absl::Status GptChunk<Real>::ExpertParallelDispatchBackward(LayerState& ls) {
  return ExchangeRows(ls.ep_d_in.data(), ls.ep_recv_rows, ls.d_expert_in.data(), ls.ep_send_rows);
}

// W, experts: this member's experts' weight gradients from every member's rows, in member
// order.
template <typename Real>
void GptChunk<Real>::ExpertParallelExpertsWeights(LayerState& ls, const LayerSpec& spec,
                                                  const std::string& h) {
  const ops::MoeExpertShape shape{config_.d_model, config_.ExpertFfn(spec),
                                  config_.activation == ActivationKind::kSwiGlu};
  const auto grads = ExpertGrads(LocalExpertModules(h, spec.moe.num_experts));
  const int S = expert_exchange_->size(), EL = static_cast<int>(grads.size());
  for (int j = 0; j < S; ++j) {
    ops::MoeExpertsBackwardWeights(grads, ls.ep_d_out.data(), ls.ep_act.data(), ls.ep_d_fch.data(),
                                   ls.ep_in.data(), ls.ep_offsets.data() + j * (EL + 1), shape);
  }
}

template <typename Real>
const Real* GptChunk<Real>::HeadWeight() const {
  return params_.value(config_.tied_head ? "wte" : "lm_head.weight");
}

template <typename Real>
std::vector<LayerPartRef> GptChunk<Real>::Parts(ChunkPass pass) const {
  using P = LayerPart;
  std::vector<P> moe;
  switch (pass) {
    case ChunkPass::kForward:
      moe = {P::kAttention, P::kDispatch, P::kExperts, P::kCombine, P::kRest};
      break;
    case ChunkPass::kBackwardInput:
      moe = {P::kRest, P::kCombine, P::kExperts, P::kDispatch, P::kAttention};
      break;
    case ChunkPass::kBackwardWeights:
      moe = {P::kRest, P::kExperts, P::kAttention};
      break;
  }
  const int L = spec_.end_layer - spec_.first_layer;
  std::vector<LayerPartRef> parts;
  for (int k = 0; k < L; ++k) {
    const int i = pass == ChunkPass::kForward ? k : L - 1 - k;
    if (!IsMoeLayer(i)) {
      parts.push_back({spec_.first_layer + i, P::kRest});
      continue;
    }
    for (P p : moe) parts.push_back({spec_.first_layer + i, p});
  }
  return parts;
}

namespace {

const char* PassName(ChunkPass pass) {
  switch (pass) {
    case ChunkPass::kForward:
      return "forward";
    case ChunkPass::kBackwardInput:
      return "input-gradient backward";
    default:
      return "weight-gradient backward";
  }
}

std::string PartName(const LayerPartRef& part) {
  constexpr const char* kNames[] = {"attn", "dispatch", "experts", "combine", "rest"};
  return absl::StrCat("L", part.layer, " ", kNames[static_cast<int>(part.part)]);
}

}  // namespace

template <typename Real>
absl::StatusOr<typename GptChunk<Real>::MicrobatchState*> GptChunk<Real>::FindForPart(
    int mb, ChunkPass pass, const LayerPartRef* part) {
  absl::MutexLock lock(&states_mu_);
  auto it = states_.find(mb);
  const int p = static_cast<int>(pass);
  if (it == states_.end() || it->second->next_part[p] < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(PassName(pass), " part of microbatch ", mb, " on chunk [", spec_.first_layer,
                     ", ", spec_.end_layer, ") before its ", PassName(pass), " began"));
  }
  MicrobatchState& st = *it->second;
  const std::vector<LayerPartRef>& parts = pass_parts_[p];
  const int next = st.next_part[p];
  const std::string expected = next < static_cast<int>(parts.size())
                                   ? PartName(parts[next])
                                   : std::string("the end of the pass");
  if (part == nullptr ? next != static_cast<int>(parts.size())
                      : next >= static_cast<int>(parts.size()) || !(parts[next] == *part)) {
    return absl::FailedPreconditionError(
        absl::StrCat(PassName(pass), " of microbatch ", mb, ": ",
                     part == nullptr ? std::string("the end") : PartName(*part),
                     " out of order (next: ", expected, ")"));
  }
  return &st;
}

template <typename Real>
absl::Status GptChunk<Real>::SetDocuments(MicrobatchState& st,
                                          const PackedDocuments* documents) const {
  const int B = options_.micro_batch_size, T = st.T;
  const int64_t N = int64_t{B} * T;
  const int32_t* ds = documents != nullptr ? documents->doc_start : nullptr;
  const uint8_t* mask = documents != nullptr ? documents->loss_mask : nullptr;
  for (int64_t i = 0; ds != nullptr && i < N; ++i) {
    const int t = static_cast<int>(i % T);
    if (ds[i] != t && (t == 0 || ds[i] != ds[i - 1])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "packed documents: doc_start[", i / T, ", ", t, "]=", ds[i], " must be ", t,
          t == 0 ? "" : absl::StrCat(" (a document begins) or ", ds[i - 1], " (as before)")));
    }
  }
  for (int64_t i = 0; mask != nullptr && i < N; ++i) {
    if (mask[i] > 1) {
      return absl::InvalidArgumentError(absl::StrCat("packed documents: loss_mask[", i / T, ", ",
                                                     i % T, "]=", int{mask[i]}, " is not 0 or 1"));
    }
  }
  st.doc_start.assign(ds, ds == nullptr ? ds : ds + N);
  st.loss_mask.assign(mask, mask == nullptr ? mask : mask + N);
  st.counted = N;
  if (mask != nullptr) st.counted = std::count(mask, mask + N, uint8_t{1});
  // RoPE's positions (NewState sized them), or wpe's when they restart with each document.
  if (options_.reset_position_ids) {
    st.positions.resize(int64_t{options_.micro_batch_size} * options_.seq_len);
  }
  const bool reset = options_.reset_position_ids && ds != nullptr;
  for (int64_t i = 0; i < N && !st.positions.empty(); ++i) {
    st.positions[i] = static_cast<int32_t>(i % T) - (reset ? ds[i] : 0);
  }
  return absl::OkStatus();
}

template <typename Real>
bool GptChunk<Real>::ExpertParallelFor(int mb) const {
  return expert_exchange_ != nullptr && expert_exchange_->size() > 1 && mb >= 0;
}

template <typename Real>
absl::Status GptChunk<Real>::ForwardBegin(int mb, const int32_t* tokens, const Real* input,
                                          const int32_t* targets, const PackedDocuments* documents,
                                          int length) {
  const int B = options_.micro_batch_size, T = length == 0 ? options_.seq_len : length;
  RETURN_IF_ERROR(CheckForwardInputs(mb, tokens, input, targets, T));
  const int C = config_.d_model;
  const int N = static_cast<int>(int64_t{B} * T);  // ValidateTrainConfig bounds B x T
  std::unique_ptr<MicrobatchState> owned = TakeState();
  MicrobatchState& st = *owned;
  st.T = T;
  for (LayerState& ls : st.layers) ls.N = N;
  if (absl::Status s = SetDocuments(st, documents); !s.ok()) {
    absl::MutexLock lock(&states_mu_);
    free_states_.push_back(std::move(owned));
    return s;
  }
  st.backward_input_done = st.forward_done = false;
  st.next_part[0] = 0;
  st.next_part[1] = st.next_part[2] = -1;
  st.aux_loss = 0.0;
  st.expert_parallel = ExpertParallelFor(mb);
  st.exchange_status = absl::OkStatus();
  if (spec_.has_embedding) {
    std::memcpy(st.tokens.data(), tokens, sizeof(int32_t) * N);
    ops::EncoderForward(st.input.data(), tokens, params_.value("wte"), OptionalValue("wpe"), B, T,
                        C, options_.reset_position_ids ? st.positions.data() : nullptr);
  } else {
    std::memcpy(st.input.data(), input, sizeof(Real) * N * C);
  }
  if (spec_.has_head) std::memcpy(st.targets.data(), targets, sizeof(int32_t) * N);
  absl::MutexLock lock(&states_mu_);
  states_[mb] = std::move(owned);
  return absl::OkStatus();
}

template <typename Real>
std::unique_ptr<typename GptChunk<Real>::MicrobatchState> GptChunk<Real>::TakeState() {
  {
    absl::MutexLock lock(&states_mu_);
    if (!free_states_.empty()) {
      std::unique_ptr<MicrobatchState> st = std::move(free_states_.back());
      free_states_.pop_back();
      return st;
    }
  }
  return NewState();
}

template <typename Real>
absl::Status GptChunk<Real>::CheckForwardInputs(int mb, const int32_t* tokens, const Real* input,
                                                const int32_t* targets, int T) const {
  if (absl::MutexLock lock(&states_mu_); states_.count(mb)) {
    return absl::FailedPreconditionError(
        absl::StrCat("forward of microbatch ", mb, " twice without a backward or release"));
  }
  if (spec_.has_embedding ? tokens == nullptr : input == nullptr) {
    return absl::InvalidArgumentError(spec_.has_embedding ? "first chunk needs tokens"
                                                          : "chunk needs an input activation");
  }
  if (spec_.has_head && targets == nullptr) {
    return absl::InvalidArgumentError("last chunk needs targets");
  }
  // A chunk holding an expert shard runs its experts only through the exchange.
  const ExpertShard& shard = options_.expert_shard;
  if (shard.size > 1 && !ExpertParallelFor(mb)) {
    return absl::FailedPreconditionError(
        absl::StrCat("F mb", mb, ": this chunk holds the experts of expert-parallel member ",
                     shard.member, " of ", shard.size, " only; ",
                     mb < 0 ? "evaluation" : "a forward without an expert exchange",
                     " needs every expert (evaluate a chunk holding them all)"));
  }
  if (T < 1 || T > options_.seq_len) {
    return absl::InvalidArgumentError(absl::StrCat("microbatch ", mb, " of length ", T,
                                                   " on a chunk built for seq_len ",
                                                   options_.seq_len, ": must be in [1, seq_len]"));
  }
  const int V = config_.vocab_size;
  const int N = static_cast<int>(int64_t{options_.micro_batch_size} * T);
  const auto outside = [&](const int32_t* ids, const char* what) -> absl::Status {
    for (int i = 0; ids != nullptr && i < N; ++i) {
      if (ids[i] < 0 || ids[i] >= V) {
        return absl::InvalidArgumentError(
            absl::StrCat(what, " id ", ids[i], " at position ", i, " is outside [0, ", V, ")"));
      }
    }
    return absl::OkStatus();
  };
  if (spec_.has_embedding) RETURN_IF_ERROR(outside(tokens, "token"));
  if (spec_.has_head) RETURN_IF_ERROR(outside(targets, "target"));
  return absl::OkStatus();
}

template <typename Real>
absl::Status GptChunk<Real>::ForwardPart(int mb, const LayerPartRef& part) {
  ASSIGN_OR_RETURN(MicrobatchState * st, FindForPart(mb, ChunkPass::kForward, &part));
  LayerForwardPart(*st, part.layer - spec_.first_layer, part.part);
  ++st->next_part[0];
  return std::exchange(st->exchange_status, absl::OkStatus());
}

template <typename Real>
absl::Status GptChunk<Real>::ForwardEnd(int mb) {
  ASSIGN_OR_RETURN(MicrobatchState * found, FindForPart(mb, ChunkPass::kForward, nullptr));
  MicrobatchState& st = *found;
  if (spec_.has_head) {
    const int N = static_cast<int>(int64_t{options_.micro_batch_size} * st.T);
    const int C = config_.d_model, V = config_.vocab_size;
    NormForward(config_, st.lnf.data(), st.lnf_mean.data(), st.lnf_rstd.data(),
                st.layers.back().res3, params_.value("ln_f.weight"), OptionalValue("ln_f.bias"), N,
                C);
    ops::LinearForward<Real>(st.probs.data(), st.lnf.data(), HeadWeight(), nullptr, N, C, V);
    ops::SoftmaxCrossEntropyForward(st.losses.data(), st.probs.data(), st.probs.data(),
                                    st.targets.data(), N, V);
    double sum = 0.0;
    if (st.loss_mask.empty()) {
      for (int i = 0; i < N; ++i) sum += st.losses[i];
    } else {
      for (int i = 0; i < N; ++i) sum += st.loss_mask[i] ? st.losses[i] : Real{0};
    }
    st.loss = st.counted > 0 ? sum / st.counted : 0.0;
  }
  st.forward_done = true;
  return absl::OkStatus();
}

template <typename Real>
absl::Status GptChunk<Real>::Forward(int mb, const int32_t* tokens, const Real* input,
                                     const int32_t* targets, const PackedDocuments* documents,
                                     int length) {
  RETURN_IF_ERROR(ForwardBegin(mb, tokens, input, targets, documents, length));
  for (const LayerPartRef& part : pass_parts_[0]) RETURN_IF_ERROR(ForwardPart(mb, part));
  return ForwardEnd(mb);
}

template <typename Real>
const Real* GptChunk<Real>::output(int mb) const {
  absl::MutexLock lock(&states_mu_);
  auto it = states_.find(mb);
  if (it == states_.end() || it->second->layers.empty() || !it->second->forward_done) {
    return nullptr;
  }
  return it->second->layers.back().res3;
}

template <typename Real>
template <typename T, typename Read>
T GptChunk<Real>::ReadState(int mb, T none, Read read) const {
  absl::MutexLock lock(&states_mu_);
  auto it = states_.find(mb);
  return it == states_.end() ? none : read(*it->second);
}

template <typename Real>
double GptChunk<Real>::loss(int mb) const {
  return ReadState(mb, 0.0, [](const MicrobatchState& st) { return st.loss; });
}

template <typename Real>
int GptChunk<Real>::length(int mb) const {
  return ReadState(mb, 0, [](const MicrobatchState& st) { return st.T; });
}

template <typename Real>
double GptChunk<Real>::step_loss_term(int mb) const {
  return ReadState(mb, 0.0, [this](const MicrobatchState& st) {
    if (step_tokens_ == 0) return st.loss;
    const double tokens = double(options_.micro_batch_size) * st.T;
    return st.loss * (tokens * step_microbatches_ / double(step_tokens_));
  });
}

template <typename Real>
double GptChunk<Real>::aux_loss(int mb) const {
  return ReadState(mb, 0.0, [](const MicrobatchState& st) { return st.aux_loss; });
}

template <typename Real>
std::map<int, MoeLayerStats> GptChunk<Real>::TakeMoeStats() {
  std::map<int, MoeLayerStats> stats;
  stats.swap(moe_stats_);
  return stats;
}

template <typename Real>
const Real* GptChunk<Real>::probabilities(int mb) const {
  absl::MutexLock lock(&states_mu_);
  auto it = states_.find(mb);
  if (!spec_.has_head || it == states_.end() || !it->second->forward_done ||
      it->second->next_part[1] != -1) {
    return nullptr;
  }
  return it->second->probs.data();
}

// The MLP's residual in I: d_res2 starts as d_out.
template <typename Real>
void GptChunk<Real>::MlpBackwardInputBegin(MicrobatchState& st, int i, const Real* d_out) {
  const int64_t NC = int64_t{options_.micro_batch_size} * st.T * config_.d_model;
  LayerState& ls = st.layers[i];
  ls.d_out = d_out;
  if (config_.layers[spec_.first_layer + i].mlp != MlpKind::kNone) {
    std::memcpy(ls.d_res2.data(), d_out, sizeof(Real) * NC);
  }
}

// I from d_ln2 (the MLP's, complete) down: norm 2 into d_res2, then the attention:
// res2 = in + attn(norm_1(in)), into d_in.
template <typename Real>
void GptChunk<Real>::AttentionBackwardInput(MicrobatchState& st, int i) {
  const int B = options_.micro_batch_size, T = st.T;
  const auto [N, C, ls, spec, h] = ViewOf(st, i);
  const int64_t NC = int64_t{N} * C;
  const GptConfig& c = config_;
  ParameterSet<Real>& p = params_;
  if (spec.mlp != MlpKind::kNone) {
    NormBackwardInput(c, ls.d_res2.data(), ls.d_ln2.data(), ls.res2, p.value(h + "ln_2.weight"),
                      ls.ln2_mean.data(), ls.ln2_rstd.data(), N, C);
  }
  const Real* d_res2 = spec.mlp != MlpKind::kNone ? ls.d_res2.data() : ls.d_out;
  ls.d_res2_ptr = d_res2;
  std::memcpy(ls.d_in.data(), d_res2, sizeof(Real) * NC);
  if (spec.attention == AttentionKind::kCausal) {
    Zero(st.scratch_atty);
    ops::LinearBackwardInput(st.scratch_atty.data(), d_res2, p.value(h + "attn.c_proj.weight"), N,
                             C, C);
    Zero(ls.d_qkv);
    ops::GroupedAttentionBackwardInput(ls.d_qkv.data(), st.scratch_atty.data(), ls.qkv.data(),
                                       ls.att.data(), AttentionShapeOf(c, spec, B, T));
    if (c.positions == PositionKind::kRope) {
      ops::RopeBackwardInput(ls.d_qkv.data(), st.positions.data(), RopeShapeOf(c, spec, N));
    }
    Zero(ls.d_ln1);
    ops::LinearBackwardInput(ls.d_ln1.data(), ls.d_qkv.data(), p.value(h + "attn.c_attn.weight"), N,
                             C, static_cast<int>(c.QkvWidth(spec)));
  } else if (spec.attention == AttentionKind::kLinear) {
    Zero(ls.d_ln1);
    ops::LinearBackwardInput(ls.d_ln1.data(), d_res2, p.value(h + "attn.linear.weight"), N, C, C);
  }
  if (spec.attention != AttentionKind::kNone) {
    NormBackwardInput(c, ls.d_in.data(), ls.d_ln1.data(), ls.in, p.value(h + "ln_1.weight"),
                      ls.ln1_mean.data(), ls.ln1_rstd.data(), N, C);
  }
}

template <typename Real>
void GptChunk<Real>::LayerBackwardInput(MicrobatchState& st, int i, const Real* d_out) {
  if (IsMoeLayer(i)) {  // the same parts a sub-step schedule runs one by one
    for (LayerPart part : {LayerPart::kRest, LayerPart::kCombine, LayerPart::kExperts,
                           LayerPart::kDispatch, LayerPart::kAttention}) {
      LayerBackwardInputPart(st, i, part);
    }
    return;
  }
  const auto [N, C, ls, spec, h] = ViewOf(st, i);
  const GptConfig& c = config_;
  ParameterSet<Real>& p = params_;
  // MLP: res3 = res2 + mlp(norm_2(res2)).
  MlpBackwardInputBegin(st, i, d_out);
  if (spec.mlp == MlpKind::kDense) {
    const int F = c.FfnHidden(spec), FC = static_cast<int>(c.FcWidth(spec));
    const int64_t NF = int64_t{N} * F;
    std::memset(st.scratch_act.data(), 0, NF * sizeof(Real));
    ops::LinearBackwardInput(st.scratch_act.data(), d_out, p.value(h + "mlp.c_proj.weight"), N, F,
                             C);
    Zero(ls.d_fch);
    if (c.activation == ActivationKind::kGelu) {
      ops::GeluBackwardInput(ls.d_fch.data(), ls.fch.data(), st.scratch_act.data(), NF);
    } else {
      ops::SwiGluBackwardInput(ls.d_fch.data(), ls.fch.data(), st.scratch_act.data(), N, F);
    }
    Zero(ls.d_ln2);
    ops::LinearBackwardInput(ls.d_ln2.data(), ls.d_fch.data(), p.value(h + "mlp.c_fc.weight"), N, C,
                             FC);
  } else if (spec.mlp == MlpKind::kLinear) {
    Zero(ls.d_ln2);
    ops::LinearBackwardInput(ls.d_ln2.data(), d_out, p.value(h + "mlp.linear.weight"), N, C, C);
  }
  AttentionBackwardInput(st, i);
}

template <typename Real>
void GptChunk<Real>::LayerBackwardInputPart(MicrobatchState& st, int i, LayerPart part) {
  const Real* d_out = i + 1 == static_cast<int>(st.layers.size()) ? st.d_output.data()
                                                                  : st.layers[i + 1].d_in.data();
  if (!IsMoeLayer(i)) {  // whole, as kRest
    LayerBackwardInput(st, i, d_out);
    return;
  }
  const auto [N, C, ls, spec, h] = ViewOf(st, i);
  switch (part) {
    case LayerPart::kRest:
      MlpBackwardInputBegin(st, i, d_out);
      MoeRestBackwardInput(st, ls, spec, h);
      break;
    case LayerPart::kCombine:
      MoeCombineBackwardPart(ls);
      if (st.expert_parallel) st.exchange_status.Update(ExpertParallelCombineBackward(ls));
      break;
    case LayerPart::kExperts:
      if (st.expert_parallel) {
        ExpertParallelExpertsBackward(ls, spec, h);
      } else {
        MoeExpertsBackwardPart(st, ls, spec, h);
      }
      break;
    case LayerPart::kDispatch:
      if (st.expert_parallel) st.exchange_status.Update(ExpertParallelDispatchBackward(ls));
      MoeDispatchBackwardPart(ls);
      break;
    case LayerPart::kAttention:
      MoeRouterBackwardInput(ls, spec, h, spec_.first_layer + i);
      AttentionBackwardInput(st, i);
      break;
  }
}

// W of a dense or linear MLP.
template <typename Real>
void GptChunk<Real>::MlpWeightsOf(MicrobatchState& st, int i) {
  const auto [N, C, ls, spec, h] = ViewOf(st, i);
  const GptConfig& c = config_;
  ParameterSet<Real>& p = params_;
  if (spec.mlp == MlpKind::kDense) {
    const int F = c.FfnHidden(spec), FC = static_cast<int>(c.FcWidth(spec));
    ops::LinearBackwardWeights(p.grad(h + "mlp.c_proj.weight"), OptionalGrad(h + "mlp.c_proj.bias"),
                               ls.d_out, ls.fch_act.data(), N, F, C);
    ops::LinearBackwardWeights(p.grad(h + "mlp.c_fc.weight"), OptionalGrad(h + "mlp.c_fc.bias"),
                               ls.d_fch.data(), ls.ln2.data(), N, C, FC);
  } else if (spec.mlp == MlpKind::kLinear) {
    ops::LinearBackwardWeights(p.grad(h + "mlp.linear.weight"), OptionalGrad(h + "mlp.linear.bias"),
                               ls.d_out, ls.ln2.data(), N, C, C);
  }
}

// W of norm 2 and of the attention block (norm 1 included).
template <typename Real>
void GptChunk<Real>::AttentionBackwardWeights(MicrobatchState& st, int i) {
  const auto [N, C, ls, spec, h] = ViewOf(st, i);
  const GptConfig& c = config_;
  ParameterSet<Real>& p = params_;
  if (spec.mlp != MlpKind::kNone) {
    NormBackwardWeights(c, p.grad(h + "ln_2.weight"), OptionalGrad(h + "ln_2.bias"),
                        ls.d_ln2.data(), ls.res2, ls.ln2_mean.data(), ls.ln2_rstd.data(), N, C);
  }
  if (spec.attention == AttentionKind::kCausal) {
    ops::LinearBackwardWeights(p.grad(h + "attn.c_proj.weight"),
                               OptionalGrad(h + "attn.c_proj.bias"), ls.d_res2_ptr, ls.atty.data(),
                               N, C, C);
    ops::LinearBackwardWeights(p.grad(h + "attn.c_attn.weight"),
                               OptionalGrad(h + "attn.c_attn.bias"), ls.d_qkv.data(), ls.ln1.data(),
                               N, C, static_cast<int>(c.QkvWidth(spec)));
  } else if (spec.attention == AttentionKind::kLinear) {
    ops::LinearBackwardWeights(p.grad(h + "attn.linear.weight"),
                               OptionalGrad(h + "attn.linear.bias"), ls.d_res2_ptr, ls.ln1.data(),
                               N, C, C);
  }
  if (spec.attention != AttentionKind::kNone) {
    NormBackwardWeights(c, p.grad(h + "ln_1.weight"), OptionalGrad(h + "ln_1.bias"),
                        ls.d_ln1.data(), ls.in, ls.ln1_mean.data(), ls.ln1_rstd.data(), N, C);
  }
}

// Each tensor gets one contribution per microbatch, so the parts' order (shared expert,
// experts, router) leaves every gradient bit for bit as before.
template <typename Real>
void GptChunk<Real>::LayerBackwardWeights(MicrobatchState& st, int i) {
  if (IsMoeLayer(i)) {
    for (LayerPart part : {LayerPart::kRest, LayerPart::kExperts, LayerPart::kAttention}) {
      LayerBackwardWeightsPart(st, i, part);
    }
    return;
  }
  MlpWeightsOf(st, i);
  AttentionBackwardWeights(st, i);
}

template <typename Real>
void GptChunk<Real>::LayerBackwardWeightsPart(MicrobatchState& st, int i, LayerPart part) {
  if (!IsMoeLayer(i)) {  // whole, as kRest
    LayerBackwardWeights(st, i);
    return;
  }
  const auto [N, C, ls, spec, h] = ViewOf(st, i);
  switch (part) {
    case LayerPart::kRest:
      MoeSharedBackwardWeights(ls, spec, h);
      break;
    case LayerPart::kExperts:
      if (st.expert_parallel) {
        ExpertParallelExpertsWeights(ls, spec, h);
      } else {
        MoeExpertsBackwardWeightsPart(ls, spec, h);
      }
      break;
    case LayerPart::kAttention:
      MoeRouterBackwardWeights(ls, spec, h);
      AttentionBackwardWeights(st, i);
      break;
    default:  // dispatch and combine have no weights
      break;
  }
}

template <typename Real>
absl::Status GptChunk<Real>::SetStepMicrobatches(int m) {
  if (m < 1 || m > options_.num_microbatches) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a step of ", m, " microbatches on a chunk built for ", options_.num_microbatches));
  }
  step_microbatches_ = m;
  return absl::OkStatus();
}

template <typename Real>
absl::Status GptChunk<Real>::SetStepTokens(int64_t tokens) {
  if (tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat("a step of ", tokens, " tokens"));
  }
  step_tokens_ = tokens;
  return absl::OkStatus();
}

template <typename Real>
absl::Status GptChunk<Real>::BackwardInputBegin(int mb, const Real* dout) {
  ASSIGN_OR_RETURN(MicrobatchState * found, Find(mb, "input-gradient backward"));
  MicrobatchState& st = *found;
  if (st.next_part[1] != -1) {
    return absl::FailedPreconditionError(
        absl::StrCat("input-gradient backward of microbatch ", mb, " twice"));
  }
  if (!spec_.has_head && dout == nullptr) {
    return absl::InvalidArgumentError("chunk without the head needs the output gradient");
  }
  const int B = options_.micro_batch_size, T = st.T;
  const int C = config_.d_model, V = config_.vocab_size;
  const int N = static_cast<int>(int64_t{B} * T);  // ValidateTrainConfig bounds B x T
  const int64_t NC = int64_t{N} * C;
  ParameterSet<Real>& p = params_;
  if (spec_.has_head) {
    // The step's loss is the mean over M microbatches of the mean over the N tokens (those
    // that count, with a loss mask); under SetStepTokens, the microbatch's mean weighs
    // N / step_tokens_ instead of 1 / M.
    const double per_token =
        step_tokens_ > 0 ? 1.0 / double(step_tokens_) : 1.0 / (double(N) * step_microbatches_);
    std::vector<Real> dlosses(N, static_cast<Real>(per_token));
    if (!st.loss_mask.empty()) {
      const double d_counted = st.counted == 0 ? 0.0
                               : step_tokens_ > 0
                                   ? double(N) / (double(st.counted) * double(step_tokens_))
                                   : 1.0 / (double(st.counted) * step_microbatches_);
      const Real d = static_cast<Real>(d_counted);
      for (int i = 0; i < N; ++i) dlosses[i] = st.loss_mask[i] ? d : Real{0};
    }
    ops::SoftmaxCrossEntropyBackwardInput(st.probs.data(), st.probs.data(), st.targets.data(),
                                          dlosses.data(), N, V);  // probs now hold dlogits
    Zero(st.d_lnf);
    ops::LinearBackwardInput(st.d_lnf.data(), st.probs.data(), HeadWeight(), N, C, V);
    Zero(st.d_output);
    const Real* x = st.layers.back().res3;
    NormBackwardInput(config_, st.d_output.data(), st.d_lnf.data(), x, p.value("ln_f.weight"),
                      st.lnf_mean.data(), st.lnf_rstd.data(), N, C);
  } else {
    std::memcpy(st.d_output.data(), dout, sizeof(Real) * NC);
  }
  st.next_part[1] = 0;
  return absl::OkStatus();
}

template <typename Real>
absl::Status GptChunk<Real>::BackwardInputPart(int mb, const LayerPartRef& part) {
  ASSIGN_OR_RETURN(MicrobatchState * st, FindForPart(mb, ChunkPass::kBackwardInput, &part));
  LayerBackwardInputPart(*st, part.layer - spec_.first_layer, part.part);
  ++st->next_part[1];
  return std::exchange(st->exchange_status, absl::OkStatus());
}

template <typename Real>
absl::Status GptChunk<Real>::BackwardInputEnd(int mb) {
  ASSIGN_OR_RETURN(MicrobatchState * st, FindForPart(mb, ChunkPass::kBackwardInput, nullptr));
  st->backward_input_done = true;
  return absl::OkStatus();
}

template <typename Real>
absl::Status GptChunk<Real>::BackwardInput(int mb, const Real* dout) {
  RETURN_IF_ERROR(BackwardInputBegin(mb, dout));
  for (const LayerPartRef& part : pass_parts_[1]) RETURN_IF_ERROR(BackwardInputPart(mb, part));
  return BackwardInputEnd(mb);
}

template <typename Real>
const Real* GptChunk<Real>::input_grad(int mb) const {
  absl::MutexLock lock(&states_mu_);
  auto it = states_.find(mb);
  if (it == states_.end() || !it->second->backward_input_done) return nullptr;
  return it->second->layers.front().d_in.data();
}

template <typename Real>
absl::Status GptChunk<Real>::BackwardWeightsBegin(int mb) {
  ASSIGN_OR_RETURN(MicrobatchState * found, Find(mb, "weight-gradient backward"));
  MicrobatchState& st = *found;
  if (!st.backward_input_done) {
    return absl::FailedPreconditionError(absl::StrCat("weight-gradient backward of microbatch ", mb,
                                                      " before its input-gradient backward"));
  }
  if (st.next_part[2] != -1) {
    return absl::FailedPreconditionError(
        absl::StrCat("weight-gradient backward of microbatch ", mb, " twice"));
  }
  HeadBackwardWeights(st);
  st.next_part[2] = 0;
  return absl::OkStatus();
}

template <typename Real>
void GptChunk<Real>::HeadBackwardWeights(MicrobatchState& st) {
  if (!spec_.has_head) return;
  const int N = static_cast<int>(int64_t{options_.micro_batch_size} * st.T);
  const int C = config_.d_model, V = config_.vocab_size;
  ParameterSet<Real>& p = params_;
  Real* dhead = !config_.tied_head       ? p.grad("lm_head.weight")
                : head_wte_grad_.empty() ? p.grad("wte")
                                         : head_wte_grad_.data();
  ops::LinearBackwardWeights<Real>(dhead, nullptr, st.probs.data(), st.lnf.data(), N, C, V);
  NormBackwardWeights(config_, p.grad("ln_f.weight"), OptionalGrad("ln_f.bias"), st.d_lnf.data(),
                      st.layers.back().res3, st.lnf_mean.data(), st.lnf_rstd.data(), N, C);
}

template <typename Real>
void GptChunk<Real>::EmbeddingBackwardWeights(MicrobatchState& st) {
  if (!spec_.has_embedding) return;
  ops::EncoderBackwardWeights(params_.grad("wte"), OptionalGrad("wpe"),
                              st.layers.front().d_in.data(), st.tokens.data(),
                              options_.micro_batch_size, st.T, config_.d_model,
                              options_.reset_position_ids ? st.positions.data() : nullptr);
}

template <typename Real>
absl::Status GptChunk<Real>::BackwardWeightsPart(int mb, const LayerPartRef& part) {
  ASSIGN_OR_RETURN(MicrobatchState * st, FindForPart(mb, ChunkPass::kBackwardWeights, &part));
  LayerBackwardWeightsPart(*st, part.layer - spec_.first_layer, part.part);
  ++st->next_part[2];
  return absl::OkStatus();
}

template <typename Real>
absl::Status GptChunk<Real>::BackwardWeightsPartSplit(int mb, const LayerPartRef& part,
                                                      const std::function<void()>& mlp_done) {
  ASSIGN_OR_RETURN(MicrobatchState * st, FindForPart(mb, ChunkPass::kBackwardWeights, &part));
  const int i = part.layer - spec_.first_layer;
  if (IsMoeLayer(i)) {
    LayerBackwardWeightsPart(*st, i, part.part);
  } else {  // LayerBackwardWeights' two pieces, in its order
    MlpWeightsOf(*st, i);
    mlp_done();
    AttentionBackwardWeights(*st, i);
  }
  ++st->next_part[2];
  return absl::OkStatus();
}

template <typename Real>
absl::Status GptChunk<Real>::BackwardWeightsEnd(int mb) {
  ASSIGN_OR_RETURN(MicrobatchState * st, FindForPart(mb, ChunkPass::kBackwardWeights, nullptr));
  EmbeddingBackwardWeights(*st);
  Release(mb);
  return absl::OkStatus();
}

template <typename Real>
absl::Status GptChunk<Real>::BackwardWeights(int mb) {
  RETURN_IF_ERROR(BackwardWeightsBegin(mb));
  for (const LayerPartRef& part : pass_parts_[2]) RETURN_IF_ERROR(BackwardWeightsPart(mb, part));
  return BackwardWeightsEnd(mb);
}

// Every W part of layer i; a layer that is not MoE in BackwardWeightsPartSplit's two pieces.
template <typename Real>
void GptChunk<Real>::LayerWeightsReporting(MicrobatchState& st, int i,
                                           const std::function<void()>& weights_done) {
  const int layer = spec_.first_layer + i;
  for (const LayerPartRef& part : pass_parts_[2]) {
    if (part.layer != layer) continue;
    if (IsMoeLayer(i)) {
      LayerBackwardWeightsPart(st, i, part.part);
    } else {
      MlpWeightsOf(st, i);
      if (weights_done) weights_done();
      AttentionBackwardWeights(st, i);
    }
    ++st.next_part[2];
  }
  if (weights_done) weights_done();
}

// The I parts in their order; after a layer's last one, that layer's W parts. W's own checks
// (FindForPart) need the whole I first, so this marks W begun itself.
template <typename Real>
absl::Status GptChunk<Real>::Backward(int mb, const Real* dout, Real* input_grad,
                                      const std::function<void()>& weights_done) {
  RETURN_IF_ERROR(BackwardInputBegin(mb, dout));
  ASSIGN_OR_RETURN(MicrobatchState * st, Find(mb, "backward"));
  HeadBackwardWeights(*st);
  st->next_part[2] = 0;
  if (spec_.has_head && weights_done) weights_done();
  const std::vector<LayerPartRef>& parts = pass_parts_[1];
  for (size_t k = 0; k < parts.size(); ++k) {
    RETURN_IF_ERROR(BackwardInputPart(mb, parts[k]));
    if (k + 1 == parts.size() || parts[k + 1].layer != parts[k].layer) {
      LayerWeightsReporting(*st, parts[k].layer - spec_.first_layer, weights_done);
    }
  }
  RETURN_IF_ERROR(BackwardInputEnd(mb));
  if (input_grad != nullptr) {
    const int64_t NC = int64_t{options_.micro_batch_size} * st->T * config_.d_model;
    std::memcpy(input_grad, st->layers.front().d_in.data(), sizeof(Real) * NC);
  }
  EmbeddingBackwardWeights(*st);
  Release(mb);
  return absl::OkStatus();
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
  absl::MutexLock lock(&states_mu_);
  auto it = states_.find(mb);
  if (it == states_.end()) return;
  free_states_.push_back(std::move(it->second));
  states_.erase(it);
}

template class GptChunk<float>;
template class GptChunk<double>;

}  // namespace stagehand::models
