// A consecutive run of GPT layers (the first chunk adds the embedding, the last the final
// norm, the head (tied or not) and the loss) with forward, input-grad (B) and weight-grad (W) as
// separate calls on one microbatch, and that microbatch's saved activations.
// Not a scheduler: which microbatch runs when is decided in runtime/.
#ifndef STAGEHAND_MODELS_GPT_CHUNK_H_
#define STAGEHAND_MODELS_GPT_CHUNK_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "models/expert_exchange.h"
#include "models/gpt_config.h"
#include "models/parameters.h"
#include "ops/cpu/moe_experts.h"

namespace stagehand::models {

// Layers [first_layer, end_layer) of the model; the embedding and/or the head.
struct ChunkSpec {
  int first_layer = 0;
  int end_layer = 0;
  bool has_embedding = false;
  bool has_head = false;
};

// Cuts `num_layers` into `num_chunks` consecutive, non-empty chunks of balanced size (the
// first num_layers % num_chunks chunks get one more). Error if a cut cannot be made.
absl::StatusOr<std::vector<ChunkSpec>> CutLayers(int num_layers, int num_chunks);

// Cuts with explicit sizes: layers_per_chunk must be positive and sum to num_layers.
absl::StatusOr<std::vector<ChunkSpec>> CutLayersAs(int num_layers,
                                                   const std::vector<int>& layers_per_chunk);

// Expert parallelism (--ep): which routed experts a chunk holds. Member `member` of `size`
// holds experts [member X/size, (member + 1) X/size) of each MoE layer with X experts, under
// their global names ("h.3.mlp.experts.5.c_fc.weight"), in id order; size 1: every expert.
struct ExpertShard {
  int member = 0;
  int size = 1;
  // Experts [first, first + count) of a layer with `num_experts` experts.
  int count(int num_experts) const { return num_experts / size; }
  int first(int num_experts) const { return member * count(num_experts); }
};

struct ChunkOptions {
  int micro_batch_size = 4;  // B
  int seq_len = 64;          // T
  int num_microbatches = 1;  // M: the loss of a step is the mean over M microbatches
  // Positions restart at 0 with each packed document (Megatron's --reset_position_ids), for
  // learned position embeddings and RoPE alike; without PackedDocuments a row is one document.
  bool reset_position_ids = false;
  // The routed experts held here (--ep); the router, the shared expert and every other tensor
  // are whole. A chunk holding a shard runs its experts through SetExpertExchange only.
  ExpertShard expert_shard;
};

// The documents packed into one microbatch (Megatron's packed_seq_params / cu_seqlens, per
// token): doc_start (B, T): the position in its row where token t's document begins, so
// doc_start[t] is t or doc_start[t - 1] (and 0 at t = 0); a token attends to keys
// [doc_start[t], t] only. loss_mask (B, T) or null (every token counts): 1 where token t's
// loss counts. The microbatch's loss is the mean over the tokens that count (0 when none do).
struct PackedDocuments {
  const int32_t* doc_start = nullptr;
  const uint8_t* loss_mask = nullptr;
};

// What an MoE layer's router did over the microbatches whose B ran since the last take.
struct MoeLayerStats {
  std::vector<int64_t> tokens_per_expert;  // (E) routing choices per expert, before dropping
  int64_t dropped = 0;                     // choices over capacity
  double aux_loss = 0.0;                   // sum over microbatches of the weighted aux loss
  double balance = 0.0;  // sum over microbatches of the load-balancing loss E sum_e f_e P_e,
                         // unweighted (1: balanced; E: collapsed), whatever the coefficient
  int microbatches = 0;
};

// One part of a layer: the fine-grained callables that the schedule IR names as sub-steps
// (runtime/sub_step.h). An MoE layer splits into all five; any other layer runs whole, as
// kRest.
enum class LayerPart {
  kAttention,  // norm 1, attention, residual, norm 2 and (MoE) the router
  kDispatch,   // tokens to their experts' rows
  kExperts,    // the expert MLPs on their rows
  kCombine,    // expert rows back to tokens, gate-weighted
  kRest,       // an MoE layer's shared expert, auxiliary losses and residual; a layer whole
};

// The passes a chunk runs in parts.
enum class ChunkPass { kForward, kBackwardInput, kBackwardWeights };

// A part of one layer within a pass: `layer` is the global layer index.
struct LayerPartRef {
  int layer = 0;
  LayerPart part = LayerPart::kRest;
  friend bool operator==(const LayerPartRef& a, const LayerPartRef& b) {
    return a.layer == b.layer && a.part == b.part;
  }
};

template <typename Real>
class GptChunk {
 public:
  // Validates the config, spec and options; allocates and initialises the parameters.
  static absl::StatusOr<std::unique_ptr<GptChunk>> Create(const GptConfig& config,
                                                          const ChunkSpec& spec,
                                                          const ChunkOptions& options);
  ~GptChunk();

  // F on microbatch mb. tokens (B, T) for the first chunk (else null); input (B, T, C) for
  // the others (else null); targets (B, T) for the last chunk (else null).
  // `documents` (null: each row is one document, every loss counts) packs documents into the
  // rows; every chunk of the model gets the same. `length` is the microbatch's T (variable
  // lengths, --seq_len_policy=variable): in [1, options().seq_len]; 0: options().seq_len. Every
  // tensor of mb, its passes and its output and input gradient are then (B, length, ...).
  absl::Status Forward(int mb, const int32_t* tokens, const Real* input, const int32_t* targets,
                       const PackedDocuments* documents = nullptr, int length = 0);
  // (B, T, C) output of F(mb) for a chunk without the head; valid until mb is released.
  const Real* output(int mb) const;
  // T of F(mb) (its `length`), while mb's activations are held; else 0.
  int length(int mb) const;
  // Mean token loss of F(mb), last chunk only: the language-model loss, without the MoE
  // auxiliary losses.
  double loss(int mb) const;
  // loss(mb) as a term of the step's loss, which is the mean over the step's M microbatches of
  // these terms: loss(mb) itself when every microbatch weighs 1/M; under SetStepTokens,
  // loss(mb) x M x (B x T_mb) / step tokens, so that the step's loss is the token-weighted
  // mean (without a loss mask: the sum of the step's token losses / its tokens).
  double step_loss_term(int mb) const;
  // F(mb)'s MoE auxiliary losses in this chunk's layers, each weighted by its coefficient
  // (aux_loss_coeff x load-balancing + z_loss_coeff x z-loss); 0 without MoE layers. The
  // objective a step minimises is mean over microbatches of (loss + every chunk's aux_loss):
  // B adds the auxiliary gradients (scaled 1/M, the step's M) where the router is.
  double aux_loss(int mb) const;
  // Per MoE layer (global index): tokens per expert, drops and aux losses of the microbatches
  // whose B ran since the last call; resets them.
  std::map<int, MoeLayerStats> TakeMoeStats();
  // (B, T, V) next-token probabilities of F(mb), last chunk only (else null); valid until
  // B(mb) (which turns them into logit gradients) or until mb is released.
  const Real* probabilities(int mb) const;

  // B on microbatch mb: dout (B, T, C) is the gradient of the chunk's output (null for the
  // last chunk, whose gradient starts at the loss). Keeps what W needs.
  absl::Status BackwardInput(int mb, const Real* dout);
  // The M of the current step, which scales the loss gradient (the step's loss is the mean
  // over its M microbatches): options().num_microbatches until set; a batch-size ramp-up
  // sets a smaller one. InvalidArgument outside [1, options().num_microbatches].
  absl::Status SetStepMicrobatches(int m);
  // Variable lengths: the step's tokens (sum over its microbatches, every replica's, of
  // B x T_m). Then microbatch mb's mean loss weighs (B x T_mb) / tokens in the step's loss
  // and its gradient, in place of 1/M, so that the step's loss does not depend on how its
  // tokens are split into microbatches. 0 (the default): 1/M each. The MoE auxiliary losses
  // stay a mean over microbatches (1/M). InvalidArgument for a negative count.
  absl::Status SetStepTokens(int64_t tokens);
  // (B, T, C) gradient w.r.t. the chunk's input, after B(mb); not for the first chunk.
  const Real* input_grad(int mb) const;
  // W on microbatch mb: accumulates weight gradients, then releases mb's activations.
  absl::Status BackwardWeights(int mb);
  // I then W as one pass in autograd's order: the head's input and weight gradients, then each
  // layer from the last to the first, its input gradient and then its weight gradients, then
  // the embedding's. Every gradient bit for bit as BackwardInput then BackwardWeights (each
  // tensor gets the same ops in the same order; only tensors of different layers change
  // places), so that a data-parallel reduction can start on a layer while the layers below it
  // still run. `input_grad` (null: not wanted) receives the (B, T, C) gradient w.r.t. the
  // chunk's input before mb is released. `weights_done` (may be empty) is called after each
  // piece of weight gradients, once its tensors are final for mb: the head's (ln_f and the
  // head's weight; chunks with the head), then per layer from the last, a layer that is not MoE
  // as its MLP's tensors then the rest (norms, attention), an MoE layer whole. The embedding's
  // gradients come last, with the call's end.
  absl::Status Backward(int mb, const Real* dout, Real* input_grad = nullptr,
                        const std::function<void()>& weights_done = {});

  // Expert parallelism (--ep): the MoE layers' dispatch and combine trade expert rows with
  // the other members of `exchange` (not owned; null: every expert runs here). This member
  // then computes only its experts ([m E/S, (m+1) E/S) of each MoE layer, m = member, S =
  // size) on the rows every member routed to them, in member order, and accumulates only
  // their weight gradients. A chunk holding every expert (expert_shard of size 1: a cluster
  // rank) leaves the others' as they were, and the data-parallel sum carries each expert's
  // gradient from its owners; with options().expert_shard of size S > 1 the exchange must be
  // that shard's member of S (InvalidArgument otherwise). Training microbatches only (mb >=
  // 0): evaluation's forward runs every expert here, so a shard's is FailedPrecondition (as
  // is its forward without an exchange). InvalidArgument when S does not divide an MoE
  // layer's experts, or for Real other than float.
  absl::Status SetExpertExchange(ExpertExchange* exchange);

  // The same passes in parts (sub-steps), bit for bit what the whole calls compute (the
  // whole calls run these same parts): Begin, then every part of Parts(pass) in order, then
  // End. Parts(kForward): layers in order, an MoE layer as attn, dispatch, experts, combine,
  // rest; kBackwardInput: layers in reverse, an MoE layer as rest, combine, experts,
  // dispatch, attn; kBackwardWeights: layers in reverse, an MoE layer as rest, experts, attn.
  // Any other layer is one kRest. Parts of different microbatches may interleave freely.
  // FailedPrecondition for a part out of its order, or a pass begun twice or not begun.
  std::vector<LayerPartRef> Parts(ChunkPass pass) const;
  // Forward's checks and the embedding (or the input's copy); tokens / input / targets as
  // for Forward.
  absl::Status ForwardBegin(int mb, const int32_t* tokens, const Real* input,
                            const int32_t* targets, const PackedDocuments* documents = nullptr,
                            int length = 0);
  absl::Status ForwardPart(int mb, const LayerPartRef& part);
  absl::Status ForwardEnd(int mb);                            // the head and the loss (last chunk)
  absl::Status BackwardInputBegin(int mb, const Real* dout);  // the head's input gradient
  absl::Status BackwardInputPart(int mb, const LayerPartRef& part);
  absl::Status BackwardInputEnd(int mb);
  absl::Status BackwardWeightsBegin(int mb);  // the head's weight gradient
  absl::Status BackwardWeightsPart(int mb, const LayerPartRef& part);
  absl::Status BackwardWeightsEnd(int mb);  // the embedding's weight gradient; releases mb
  // BackwardWeightsPart, bit for bit, calling `mlp_done` in a layer that is not MoE (one
  // kRest part) between its two pieces: once its MLP's weight gradients are written and before
  // its norms' and attention's (each piece writes only its own tensors' gradients). For a
  // data-parallel reduction that starts on a layer's MLP while its attention still runs. An
  // MoE layer's parts never call it.
  absl::Status BackwardWeightsPartSplit(int mb, const LayerPartRef& part,
                                        const std::function<void()>& mlp_done);

  // Drops mb's activations without a backward (evaluation).
  void Release(int mb);
  // When this chunk holds both uses of the tied embedding (wte as embedding and as head),
  // the head's gradient accumulates apart and this adds it after the embedding's:
  // embedding + head, the order used when the two uses live in different chunks, so results
  // do not depend on the cut. Call before reading wte's gradient.
  void FoldTiedGradients();

  ParameterSet<Real>& params() { return params_; }
  const ParameterSet<Real>& params() const { return params_; }
  const ChunkSpec& spec() const { return spec_; }
  const GptConfig& config() const { return config_; }
  const ChunkOptions& options() const { return options_; }
  // Microbatches whose activations are held.
  int inflight() const {
    absl::MutexLock lock(&states_mu_);
    return static_cast<int>(states_.size());
  }
  // Floats one microbatch holds between F and W (activations + saved gradients).
  int64_t activation_floats_per_microbatch() const;

 private:
  struct LayerState;
  struct MicrobatchState;
  struct LayerView;
  // Layer i of `st` as every per-layer pass reads it.
  LayerView ViewOf(MicrobatchState& st, int i) const;
  GptChunk(const GptConfig& config, const ChunkSpec& spec, const ChunkOptions& options);
  std::unique_ptr<MicrobatchState> NewState() const;
  std::unique_ptr<MicrobatchState> TakeState();  // a released state to reuse, or NewState()
  // ForwardBegin's checks: mb not held, the inputs this chunk needs, with an expert shard the
  // exchange (FailedPrecondition for evaluation, or without an exchange set), 1 <= T <=
  // seq_len, and token and target ids within the vocabulary.
  absl::Status CheckForwardInputs(int mb, const int32_t* tokens, const Real* input,
                                  const int32_t* targets, int T) const;
  void LayerForward(MicrobatchState& st, int i, const Real* x);
  void LayerBackwardInput(MicrobatchState& st, int i, const Real* d_out);
  void LayerBackwardWeights(MicrobatchState& st, int i);
  // A layer's pieces (LayerForward is AttentionForward, MlpForward, MlpResidualForward; an
  // MoE MLP's pieces are its parts).
  void AttentionForward(MicrobatchState& st, int i, const Real* x);
  void MlpResidualForward(MicrobatchState& st, int i);
  void MlpBackwardInputBegin(MicrobatchState& st, int i, const Real* d_out);
  void AttentionBackwardInput(MicrobatchState& st, int i);
  void MlpWeightsOf(MicrobatchState& st, int i);
  void AttentionBackwardWeights(MicrobatchState& st, int i);
  // One part of layer i (local index) in each pass.
  void LayerForwardPart(MicrobatchState& st, int i, LayerPart part);
  void LayerBackwardInputPart(MicrobatchState& st, int i, LayerPart part);
  void LayerBackwardWeightsPart(MicrobatchState& st, int i, LayerPart part);
  // W's ends: the head's weight gradients (a chunk with the head) and the embedding's (a chunk
  // with the embedding).
  void HeadBackwardWeights(MicrobatchState& st);
  void EmbeddingBackwardWeights(MicrobatchState& st);
  // Backward's weight gradients of layer i (local index), every W part of it, calling
  // `weights_done` as Backward says.
  void LayerWeightsReporting(MicrobatchState& st, int i, const std::function<void()>& weights_done);
  bool IsMoeLayer(int i) const;  // local index
  // The state of mb for `pass`, checked against the pass's next part (`part`; null for Begin
  // and End checks): FailedPrecondition when out of order.
  absl::StatusOr<MicrobatchState*> FindForPart(int mb, ChunkPass pass, const LayerPartRef* part);
  // MoE layers (mlp == kMoe): buffers (returns the B scratch they need), F, B and W.
  int64_t AllocateMoe(LayerState& ls, const LayerSpec& spec) const;
  // MoE F parts: the router and routing (attn's end), then dispatch, experts, combine, and
  // the rest (shared expert, auxiliary losses: returns the weighted aux loss).
  void MoeRouteForward(LayerState& ls, const LayerSpec& spec, const std::string& h);
  void MoeDispatchPart(LayerState& ls);
  void MoeExpertsPart(LayerState& ls, const LayerSpec& spec, const std::string& h);
  void MoeCombinePart(LayerState& ls);
  double MoeRestForward(LayerState& ls, const LayerSpec& spec, const std::string& h);
  // MoE I parts: rest (shared expert), combine, experts, dispatch, the router (attn's start).
  void MoeRestBackwardInput(MicrobatchState& st, LayerState& ls, const LayerSpec& spec,
                            const std::string& h);
  void MoeCombineBackwardPart(LayerState& ls);
  void MoeExpertsBackwardPart(MicrobatchState& st, LayerState& ls, const LayerSpec& spec,
                              const std::string& h);
  void MoeDispatchBackwardPart(LayerState& ls);
  void MoeRouterBackwardInput(LayerState& ls, const LayerSpec& spec, const std::string& h,
                              int layer);
  // MoE W parts: the shared expert (rest), the experts, the router (attn).
  void MoeSharedBackwardWeights(LayerState& ls, const LayerSpec& spec, const std::string& h);
  void MoeExpertsBackwardWeightsPart(LayerState& ls, const LayerSpec& spec, const std::string& h);
  void MoeRouterBackwardWeights(LayerState& ls, const LayerSpec& spec, const std::string& h);
  // Layer h's ("h.3.") expert modules ("h.3.mlp.experts.0.", ...) or its shared expert's, and
  // their tensors.
  static std::vector<std::string> ExpertModules(const std::string& h, bool shared, int num_experts);
  std::vector<ops::MoeExpertTensors<const Real>> ExpertValues(
      const std::vector<std::string>& modules) const;
  std::vector<ops::MoeExpertTensors<Real>> ExpertGrads(const std::vector<std::string>& modules);
  // Expert parallelism (SetExpertExchange): dispatch sends each member its experts' rows (and
  // first their counts per expert), experts runs this member's experts on the rows received,
  // combine sends the results back; I runs the same exchanges the other way round.
  std::vector<std::string> LocalExpertModules(const std::string& h, int num_experts) const;
  absl::Status ExpertParallelDispatch(LayerState& ls, const LayerSpec& spec);
  void ExpertParallelExperts(LayerState& ls, const LayerSpec& spec, const std::string& h);
  absl::Status ExpertParallelCombine(LayerState& ls);
  absl::Status ExpertParallelCombineBackward(LayerState& ls);
  void ExpertParallelExpertsBackward(LayerState& ls, const LayerSpec& spec, const std::string& h);
  absl::Status ExpertParallelDispatchBackward(LayerState& ls);
  void ExpertParallelExpertsWeights(LayerState& ls, const LayerSpec& spec, const std::string& h);
  // One all-to-all of rows of C floats: send_rows[j] to member j, recv_rows[j] from it.
  absl::Status ExchangeRows(const Real* in, const std::vector<int64_t>& send_rows, Real* out,
                            const std::vector<int64_t>& recv_rows);
  // The head's weight: wte when tied, else lm_head.weight.
  const Real* HeadWeight() const;
  // A parameter's value / gradient, or null when this chunk has no such tensor (biases of a
  // bias-free model, LayerNorm-only biases, wpe under RoPE).
  const Real* OptionalValue(const std::string& name) const;
  Real* OptionalGrad(const std::string& name);
  absl::StatusOr<MicrobatchState*> Find(int mb, const char* what) const;
  // read(mb's state) under states_mu_, or `none` when mb is not held (defined in the .cc).
  template <typename T, typename Read>
  T ReadState(int mb, T none, Read read) const;
  // Checks `documents` (InvalidArgument naming the row and position) and copies them into
  // `st`, with the positions they give.
  absl::Status SetDocuments(MicrobatchState& st, const PackedDocuments* documents) const;
  // Whether F(mb) runs its MoE layers through the expert exchange (a training microbatch with
  // an exchange of more than one member set).
  bool ExpertParallelFor(int mb) const;

  GptConfig config_;
  ChunkSpec spec_;
  ChunkOptions options_;
  int step_microbatches_ = 1;  // M of the current step (SetStepMicrobatches)
  int64_t step_tokens_ = 0;    // tokens of the current step (SetStepTokens); 0: weights 1/M
  ParameterSet<Real> params_;
  // Guards states_ and free_states_ (not the states themselves): a communication lane runs
  // dispatch and combine parts of one microbatch while the compute lane runs another's.
  mutable absl::Mutex states_mu_;
  std::map<int, std::unique_ptr<MicrobatchState>> states_;
  std::vector<std::unique_ptr<MicrobatchState>> free_states_;
  std::vector<Real> head_wte_grad_;  // (V, C) when this chunk holds embedding and head
  std::map<int, MoeLayerStats> moe_stats_;
  ExpertExchange* expert_exchange_ = nullptr;  // not owned; SetExpertExchange
  std::vector<LayerPartRef> pass_parts_[3];    // Parts(pass) per pass, computed once
};

}  // namespace stagehand::models

#endif  // STAGEHAND_MODELS_GPT_CHUNK_H_
