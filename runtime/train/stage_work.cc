// ModelStageWork (the GPT chunks of one stage) and SyntheticStageWork (fixed durations).
#include "runtime/train/stage_work.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "runtime/train/expert_layout.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {

ModelStageWork::ModelStageWork(std::map<int, Chunk*> chunks, int num_chunks,
                               const WindowSampler* sampler, int num_microbatches,
                               OptimizerConfig optimizer, StageFaults faults,
                               DataParallelPlace place)
    : place_(place),
      chunks_(std::move(chunks)),
      num_chunks_(num_chunks),
      sampler_(sampler),
      num_microbatches_(num_microbatches),
      optimizer_(optimizer),
      faults_(faults) {
  if (optimizer_.states != nullptr && static_cast<int>(optimizer_.states->size()) < num_chunks) {
    optimizer_.states->resize(num_chunks);
  }
  for (const auto& [index, chunk] : chunks_) {
    if (!Sharded()) break;
    shard_layouts_[index] = ShardLayoutOf(chunk->params().infos(), chunk->params().size(),
                                          place_.expert_group != nullptr);
  }
}

StageFaults StageFaultsOf(const FaultPlan& plan, int stage) {
  StageFaults faults;
  if (plan.flip_stage == stage) faults.flip_at_step = plan.flip_at_step;
  faults.nan_at_step = plan.nan_at_step;  // only the stage holding chunk 0 acts on it
  faults.nan_microbatch = plan.nan_microbatch;
  if (plan.slow_stage == stage) faults.slow_forward_ms = plan.slow_forward_ms;
  return faults;
}

void ModelStageWork::BeginStep(int64_t step, int num_microbatches) {
  run_ = step == step_ ? run_ + 1 : 0;
  step_ = step;
  step_status_ = optimizer_status_;
  step_microbatches_ = num_microbatches;
  weight_passes_.clear();
  // Variable lengths: every microbatch's loss weighs its share of the step's tokens (every
  // replica's: the lengths are a pure function of (seed, step, global microbatch)).
  const int64_t step_tokens = sampler_->variable_lengths()
                                  ? sampler_->StepTokens(step, num_microbatches * place_.replicas)
                                  : 0;
  for (auto& [c, chunk] : chunks_) {
    absl::Status s = chunk->SetStepMicrobatches(num_microbatches * place_.replicas);
    if (s.ok()) s = chunk->SetStepTokens(step_tokens);
    if (!s.ok() && step_status_.ok()) step_status_ = s;
  }
}

absl::Status CheckTensorRows(const char* what, int64_t step, int chunk, int mb, int64_t floats,
                             int micro_batch_size, int length, int64_t d_model) {
  const int64_t expected = int64_t{micro_batch_size} * length * d_model;
  if (floats == expected) return absl::OkStatus();
  const int64_t row = int64_t{micro_batch_size} * d_model;
  return absl::InvalidArgumentError(absl::StrCat(
      what, " c", chunk, " mb", mb, " of step ", step, ": ", floats, " floats (",
      floats % row == 0 ? absl::StrCat(floats / row, " tokens") : std::string("not whole tokens"),
      " of B x d_model = ", row, "), expected ", expected, " (T_m = ", length,
      " tokens; the sender and this stage disagree on the microbatch's length)"));
}

absl::StatusOr<Chunk*> ModelStageWork::Get(int chunk) const {
  auto it = chunks_.find(chunk);
  if (it == chunks_.end()) {
    return absl::InvalidArgumentError(absl::StrCat("chunk ", chunk, " is not held by this stage"));
  }
  return it->second;
}

absl::Status ModelStageWork::BeginForward(Chunk* c, int chunk, int mb, const Payload* input) {
  const models::ChunkOptions& o = c->options();
  MicrobatchData data(o);
  const auto sample_start = std::chrono::steady_clock::now();
  data.Draw(*sampler_, step_, GlobalMicrobatch(mb));
  data_seconds_ +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - sample_start).count();
  if (faults_.slow_forward_ms > 0) {  // the test fault: a slow device
    std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(faults_.slow_forward_ms));
  }
  if (input != nullptr) {  // the activation's shape rides in it: B x T_m x C
    RETURN_IF_ERROR(CheckTensorRows("activation for F", step_, chunk, mb, input->size(),
                                    o.micro_batch_size, data.length(), c->config().d_model));
  }
  return c->ForwardBegin(mb, data.tokens(), input ? input->data() : nullptr, data.targets(),
                         data.documents(), data.length());
}

absl::Status ModelStageWork::EndForward(Chunk* c, int chunk, int mb, Payload* output,
                                        double* loss) {
  if (absl::Status s = c->ForwardEnd(mb); !s.ok()) return s;
  if (c->spec().has_head) {
    *loss = c->step_loss_term(mb);
  } else {
    const models::ChunkOptions& o = c->options();
    const int64_t n = int64_t{o.micro_batch_size} * c->length(mb) * c->config().d_model;
    const float* out = c->output(mb);
    output->assign(out, out + n);
    // nan_microbatch is the step's global microbatch (replica d holds d x M .. d x M + M - 1).
    if (faults_.nan_at_step > 0 && step_ == faults_.nan_at_step && chunk == 0 &&
        GlobalMicrobatch(mb) == faults_.nan_microbatch) {
      (*output)[0] = std::nanf("");  // the test fault: a poisoned batch, in every run
    }
  }
  return absl::OkStatus();
}

absl::Status ModelStageWork::Forward(int chunk, int mb, const Payload* input, Payload* output,
                                     double* loss) {
  if (!step_status_.ok()) return step_status_;
  absl::StatusOr<Chunk*> c = Get(chunk);
  if (!c.ok()) return c.status();
  if (absl::Status s = BeginForward(*c, chunk, mb, input); !s.ok()) return s;
  for (const models::LayerPartRef& part : (*c)->Parts(models::ChunkPass::kForward)) {
    if (absl::Status s = (*c)->ForwardPart(mb, part); !s.ok()) return s;
  }
  return EndForward(*c, chunk, mb, output, loss);
}

absl::Status ModelStageWork::CheckGradient(const Chunk& c, int chunk, int mb,
                                           const Payload* grad) const {
  if (grad == nullptr || c.length(mb) == 0) return absl::OkStatus();  // the chunk names a missing F
  return CheckTensorRows("gradient for I", step_, chunk, mb, grad->size(),
                         c.options().micro_batch_size, c.length(mb), c.config().d_model);
}

void ModelStageWork::CopyInputGrad(Chunk* c, int mb, Payload* input_grad) const {
  if (c->spec().has_embedding) return;
  const models::ChunkOptions& o = c->options();
  const int64_t n = int64_t{o.micro_batch_size} * c->length(mb) * c->config().d_model;
  const float* g = c->input_grad(mb);
  input_grad->assign(g, g + n);
}

absl::Status ModelStageWork::BackwardInput(int chunk, int mb, const Payload* grad,
                                           Payload* input_grad) {
  absl::StatusOr<Chunk*> c = Get(chunk);
  if (!c.ok()) return c.status();
  RETURN_IF_ERROR(CheckGradient(**c, chunk, mb, grad));
  if (absl::Status s = (*c)->BackwardInput(mb, grad ? grad->data() : nullptr); !s.ok()) return s;
  CopyInputGrad(*c, mb, input_grad);
  return absl::OkStatus();
}

absl::Status ModelStageWork::BackwardWeights(int chunk, int mb) {
  absl::StatusOr<Chunk*> c = Get(chunk);
  if (!c.ok()) return c.status();
  // The step's last W of this chunk (the lane runs them one after another) completes its
  // gradient: in parts, so that each layer's buckets can be reduced while the rest runs.
  if (progress_ && ++weight_passes_[chunk] == step_microbatches_) {
    return BackwardWeightsReporting(*c, chunk, mb);
  }
  return (*c)->BackwardWeights(mb);
}

absl::Status ModelStageWork::BackwardWeightsReporting(Chunk* c, int chunk, int mb) {
  RETURN_IF_ERROR(c->BackwardWeightsBegin(mb));
  const std::vector<models::LayerPartRef> parts = c->Parts(models::ChunkPass::kBackwardWeights);
  int done = 0;
  if (c->spec().has_head) progress_(chunk, ++done);  // the head's weight gradients
  const std::function<void()> mlp_done = [&] { progress_(chunk, ++done); };
  for (size_t i = 0; i < parts.size(); ++i) {
    RETURN_IF_ERROR(c->BackwardWeightsPartSplit(mb, parts[i], mlp_done));
    if (i + 1 == parts.size() || parts[i + 1].layer != parts[i].layer) progress_(chunk, ++done);
  }
  return c->BackwardWeightsEnd(mb);
}

GradPartLayout ModelStageWork::GradientParts() const {
  GradPartLayout out;
  if (place_.group == nullptr) return out;
  for (const auto& [index, chunk] : chunks_) {
    std::vector<std::vector<std::pair<int64_t, int64_t>>>& parts = out[index];
    if (chunk->spec().has_head) {  // the final norm and the head's weight (or its tied copy)
      parts.emplace_back();
      for (const models::ParamInfo& info : chunk->params().infos()) {
        if (info.tied_copy || absl::StartsWith(info.name, "ln_f.") ||
            info.name == "lm_head.weight") {
          parts.back().emplace_back(info.offset, info.offset + info.size);
        }
      }
    }
    for (int l = chunk->spec().end_layer - 1; l >= chunk->spec().first_layer; --l) {
      // The reports of BackwardWeightsReporting and of the fused B: a layer that is not MoE as
      // its MLP, then the rest of the layer; an MoE layer whole.
      const std::string layer = absl::StrCat("h.", l, "."), mlp = layer + "mlp.";
      const bool split = chunk->config().layers[l].mlp != models::MlpKind::kMoe;
      if (split) parts.emplace_back();
      parts.emplace_back();
      for (const models::ParamInfo& info : chunk->params().infos()) {
        if (info.tied_copy || !absl::StartsWith(info.name, layer)) continue;
        const bool in_mlp = split && absl::StartsWith(info.name, mlp);
        parts[parts.size() - (in_mlp ? 2 : 1)].emplace_back(info.offset, info.offset + info.size);
      }
    }
  }
  return out;
}

void ModelStageWork::SetGradientProgress(GradientProgress progress) {
  progress_ = std::move(progress);
}

// The chunk's fused B, layer by layer (GptChunk::Backward); the step's last W or B of the chunk
// reports its parts as BackwardWeights does.
absl::Status ModelStageWork::Backward(int chunk, int mb, const Payload* grad, Payload* input_grad) {
  ASSIGN_OR_RETURN(Chunk * c, Get(chunk));
  RETURN_IF_ERROR(CheckGradient(*c, chunk, mb, grad));
  std::function<void()> weights_done;
  int done = 0;
  if (progress_ && ++weight_passes_[chunk] == step_microbatches_) {
    weights_done = [&] { progress_(chunk, ++done); };
  }
  float* in_grad = nullptr;
  if (!c->spec().has_embedding) {
    input_grad->resize(int64_t{c->options().micro_batch_size} * c->length(mb) *
                       c->config().d_model);
    in_grad = input_grad->data();
  }
  return c->Backward(mb, grad ? grad->data() : nullptr, in_grad, weights_done);
}

TiedGradientMap ModelStageWork::TiedGradients() {
  return GatherTiedGradients(chunks_, num_chunks_);
}

void ModelStageWork::SetTiedGradients(const TiedGradientMap& sums) {
  ScatterTiedGradients(chunks_, sums);
}

std::map<int, std::vector<double>> ModelStageWork::SquaredNorms() {
  if (faults_.flip_at_step > 0 && step_ == faults_.flip_at_step && run_ == 0 && !chunks_.empty()) {
    // The test fault: one flipped bit in a gradient, in the step's first run only: the top
    // exponent bit of the first element in (0, 2) in magnitude of the first chunk's counted
    // tensors, so that the value becomes huge (about 2^128 times larger).
    models::ParameterSet<float>& params = chunks_.begin()->second->params();
    bool flipped = false;
    for (const models::ParamInfo& info : params.infos()) {
      for (int64_t i = 0; !info.tied_copy && !flipped && i < info.size; ++i) {
        float* g = params.grads() + info.offset + i;
        if (*g == 0.0f || std::fabs(*g) >= 2.0f) continue;
        uint32_t bits;
        std::memcpy(&bits, g, sizeof bits);
        bits ^= uint32_t{1} << 30;
        std::memcpy(g, &bits, sizeof bits);
        flipped = true;
      }
    }
  }
  std::map<int, std::vector<double>> norms =
      Sharded() ? ShardedSquaredNorms() : SquaredGradientNorms(chunks_);
  if (place_.expert_group != nullptr) return ExpertShardSquaredNorms(std::move(norms));
  return norms;
}

std::map<int, std::vector<std::string>> ModelStageWork::GradientNames() {
  std::map<int, std::vector<std::string>> out;
  for (const auto& [index, chunk] : chunks_) {
    std::vector<std::string>& names = out[index];
    for (const models::ParamInfo& info : chunk->params().infos()) {
      if (!info.tied_copy) names.push_back(info.name);
    }
    if (place_.expert_group == nullptr) continue;
    std::vector<std::vector<std::string>> experts;  // every member's, as the norms have them
    for (int j = 0; j < place_.expert_group->size(); ++j) {
      experts.push_back(ExpertNamesOf(chunk->params().infos(), place_.expert_group->member(), j));
    }
    names = InModelOrder(chunk->params().infos(), names, experts);
  }
  return out;
}

double ModelStageWork::TakeDataSeconds() {
  const double seconds = data_seconds_;
  data_seconds_ = 0;
  return seconds;
}

void ModelStageWork::DiscardGradients() {
  for (auto& [index, chunk] : chunks_) {
    std::fill(chunk->params().grads(), chunk->params().grads() + chunk->params().size(), 0.0f);
  }
}

void ModelStageWork::ApplyOptimizer(double clip_scale, int step) {
  for (auto& [index, chunk] : chunks_) {
    if (Sharded()) {
      if (absl::Status s = ShardedUpdate(index, *chunk, clip_scale, step);
          !s.ok() && optimizer_status_.ok()) {
        optimizer_status_ = absl::Status(
            s.code(), absl::StrCat("ZeRO-1 update of chunk ", index, ": ", s.message()));
      }
      continue;
    }
    OptimizerState& state =
        optimizer_.states != nullptr ? (*optimizer_.states)[index] : states_[index];
    ApplyAdamW(chunk->params(), state, optimizer_, step, clip_scale);
  }
}

std::map<int, int64_t> ModelStageWork::GradientFloats() const {
  std::map<int, int64_t> out;
  if (place_.group == nullptr) return out;
  for (const auto& [index, chunk] : chunks_) out[index] = chunk->params().size();
  return out;
}

absl::Status ModelStageWork::ReduceGradients(const GradBucket& bucket) {
  if (place_.group == nullptr) return absl::OkStatus();
  absl::StatusOr<Chunk*> c = Get(bucket.chunk);
  if (!c.ok()) return c.status();
  if (bucket.begin < 0 || bucket.end > (*c)->params().size() || bucket.begin > bucket.end) {
    return absl::InvalidArgumentError(
        absl::StrCat("REDUCE_GRAD c", bucket.chunk, " [", bucket.begin, ", ", bucket.end,
                     ") is outside its ", (*c)->params().size(), " gradients"));
  }
  // A chunk holding both the embedding and the head (a one-chunk model) keeps the head's
  // gradient of the tied embedding apart until folded: fold it before the chunk's first
  // bucket, so that the replicas sum it too (later folds add zeros).
  if (bucket.begin == 0) (*c)->FoldTiedGradients();
  if (Sharded()) {
    // Reduce-scattered to the owners; the tied embedding's part gathered back whole, for the
    // cross-chunk tied sum (the same on every member, so the collectives stay matched).
    const ShardLayout& layout = LayoutOf(bucket.chunk);
    float* grads = (*c)->params().grads();
    const ElementRange range{bucket.begin, bucket.end};
    RETURN_IF_ERROR(OnPieces(&ReduceScatterToOwners, layout, grads, range));
    return OnPieces(&AllGatherFromOwners, layout, grads, Intersect(range, TiedRange(**c)));
  }
  if (place_.expert_group != nullptr) return ReduceDenseAndExperts(**c, bucket);
  return place_.group->AllReduceSum(
      absl::MakeSpan((*c)->params().grads() + bucket.begin, bucket.end - bucket.begin));
}

// The bucket's pieces in order (every member of both groups has the same layout, so the
// collectives meet), each the same ordered sum as over the whole group: the replicas that do
// not hold an expert would only add zeros to it.
absl::Status ModelStageWork::ReduceDenseAndExperts(Chunk& chunk, const GradBucket& bucket) {
  for (const GradientPiece& piece :
       SplitAtExperts(chunk.params().infos(), {bucket.begin, bucket.end})) {
    Collective* group = piece.expert ? place_.expert_data_group : place_.group;
    if (group == nullptr) continue;  // one replica holds these experts: nothing to sum
    RETURN_IF_ERROR(group->AllReduceSum(
        absl::MakeSpan(chunk.params().grads() + piece.range.begin, piece.range.size())));
  }
  return absl::OkStatus();
}

// `out` (each held tensor's squared norm, whole or summed over its owners) with every expert's
// from its member (gathered over the expert-parallel group), in the whole model's order: the
// same list on every replica.
std::map<int, std::vector<double>> ModelStageWork::ExpertShardSquaredNorms(
    std::map<int, std::vector<double>> out) {
  std::vector<double> mine;  // the expert tensors' norms, chunk by chunk
  for (const auto& [index, chunk] : chunks_) {
    const std::vector<double> experts = ExpertEntries(chunk->params().infos(), out[index]);
    mine.insert(mine.end(), experts.begin(), experts.end());
  }
  if (mine.empty()) return out;  // no MoE layer on this stage (nor on its members')
  Collective& group = *place_.expert_group;
  std::vector<double> all;
  if (absl::Status s = AllGatherDoubles(group, mine, &all); !s.ok()) {
    if (optimizer_status_.ok()) optimizer_status_ = s;
    all.assign(mine.size() * group.size(), std::nan(""));  // the driver stops the step
  }
  size_t at = 0;
  for (const auto& [index, chunk] : chunks_) {
    const std::vector<models::ParamInfo>& infos = chunk->params().infos();
    const size_t n = ExpertEntries(infos, out[index]).size();
    std::vector<std::vector<double>> experts(group.size());
    for (int j = 0; j < group.size(); ++j) {
      const auto from = all.begin() + j * mine.size() + at;
      experts[j].assign(from, from + n);
    }
    out[index] = InModelOrder(infos, out[index], experts);
    at += n;
  }
  return out;
}

Collective* ModelStageWork::GroupOf(const ShardPiece& piece) const {
  return piece.piece.expert ? place_.expert_data_group : place_.group;
}

std::vector<ElementRange> ModelStageWork::OwnedPieces(const ShardLayout& layout) const {
  std::vector<ElementRange> out;
  for (const ShardPiece& p : layout.pieces) {
    const Collective* group = GroupOf(p);
    if (group == nullptr) {
      out.push_back(p.piece.range);
      continue;
    }
    const int64_t n = p.piece.expert ? layout.experts : layout.dense;
    const ElementRange owned = Intersect({p.at, p.at + p.piece.range.size()},
                                         OwnedRange(n, group->size(), group->member()));
    const int64_t shift = p.piece.range.begin - p.at;
    out.push_back({owned.begin + shift, owned.end + shift});
  }
  return out;
}

absl::Status ModelStageWork::OnPieces(ShardOp op, const ShardLayout& layout, float* data,
                                      const ElementRange& flat) const {
  for (const ShardPiece& p : layout.pieces) {
    const ElementRange part = Intersect(flat, p.piece.range);
    Collective* group = GroupOf(p);
    if (part.size() == 0 || group == nullptr) continue;
    const ShardWindow window{absl::MakeSpan(data + p.piece.range.begin, p.piece.range.size()), p.at,
                             p.piece.expert ? layout.experts : layout.dense};
    const int64_t shift = p.at - p.piece.range.begin;
    RETURN_IF_ERROR(op(*group, window, {part.begin + shift, part.end + shift}));
  }
  return absl::OkStatus();
}

std::vector<double> ModelStageWork::SumOverMembers(Collective* group,
                                                   const std::vector<double>& mine) {
  const int members = group != nullptr ? group->size() : 1;
  std::vector<double> all = mine;
  if (group != nullptr && !mine.empty()) {
    if (absl::Status s = AllGatherDoubles(*group, mine, &all); !s.ok()) {
      if (optimizer_status_.ok()) optimizer_status_ = s;
      all.assign(mine.size() * members, std::nan(""));  // the driver stops the step
    }
  }
  std::vector<double> sums(mine.size(), 0.0);
  for (size_t k = 0; k < mine.size(); ++k) {
    for (int m = 0; m < members; ++m) sums[k] += all[m * mine.size() + k];
  }
  return sums;
}

ElementRange ModelStageWork::TiedRange(const Chunk& chunk) const {
  if (num_chunks_ <= 1) return {};
  for (const models::ParamInfo& info : chunk.params().infos()) {
    if (info.name == "wte") return {info.offset, info.offset + info.size};
  }
  return {};
}

// Per tensor (tied copies skipped), the sum over the members of the squares of the elements
// each owns, combined in member order: the grid's norms, the same on every member (a dense
// tensor's over the data-parallel group, an expert's over the replicas holding it).
std::map<int, std::vector<double>> ModelStageWork::ShardedSquaredNorms() {
  std::vector<double> mine[2];  // dense tensors', experts': chunk by chunk, tensor by tensor
  for (const auto& [index, chunk] : chunks_) {
    const ShardLayout& layout = LayoutOf(index);
    const std::vector<ElementRange> owned = OwnedPieces(layout);
    for (const models::ParamInfo& info : chunk->params().infos()) {
      if (info.tied_copy) continue;
      double sum = 0.0;  // a tensor lies in one piece
      for (const ElementRange& piece : owned) {
        const ElementRange part = Intersect(piece, {info.offset, info.offset + info.size});
        if (part.size() > 0) {
          sum = ops::SumOfSquares(chunk->params().grads() + part.begin, part.size());
        }
      }
      mine[info.expert >= 0 && layout.experts > 0].push_back(sum);
    }
  }
  const std::vector<double> sums[2] = {SumOverMembers(place_.group, mine[0]),
                                       SumOverMembers(place_.expert_data_group, mine[1])};
  std::map<int, std::vector<double>> out;
  size_t k[2] = {0, 0};
  for (const auto& [index, chunk] : chunks_) {
    std::vector<double>& values = out[index];
    const bool split = LayoutOf(index).experts > 0;
    for (const models::ParamInfo& info : chunk->params().infos()) {
      if (info.tied_copy) continue;
      const int kind = info.expert >= 0 && split;
      values.push_back(sums[kind][k[kind]++]);
    }
  }
  return out;
}

OptimizerState& ModelStageWork::FullState(int index) {
  return optimizer_.states != nullptr ? (*optimizer_.states)[index] : states_[index];
}

// AdamW on the owned elements (moments sized to them; taken from the full moments once, when
// a checkpoint restored them), then every member's owned values gathered to every member.
absl::Status ModelStageWork::ShardedUpdate(int index, Chunk& chunk, double clip_scale, int step) {
  models::ParameterSet<float>& params = chunk.params();
  const ShardLayout& layout = LayoutOf(index);
  const std::vector<ElementRange> owned = OwnedPieces(layout);
  int64_t held = 0;
  for (const ElementRange& piece : owned) held += piece.size();
  OptimizerState& shard = shard_states_[index];
  OptimizerState& full = FullState(index);
  if (static_cast<int64_t>(shard.m.size()) != held) {
    const bool restored = static_cast<int64_t>(full.m.size()) == params.size() &&
                          static_cast<int64_t>(full.v.size()) == params.size();
    shard.m.assign(held, 0.f);
    shard.v.assign(held, 0.f);
    int64_t at = 0;
    for (const ElementRange& piece : restored ? owned : std::vector<ElementRange>{}) {
      std::copy(full.m.begin() + piece.begin, full.m.begin() + piece.end, shard.m.begin() + at);
      std::copy(full.v.begin() + piece.begin, full.v.begin() + piece.end, shard.v.begin() + at);
      at += piece.size();
    }
  }
  full = OptimizerState{};  // a restored or exported copy is not kept
  ops::AdamWOptions options = optimizer_.adamw;
  options.learning_rate = LearningRateAt(optimizer_, step);
  int64_t at = 0;  // the piece's first moment
  for (const ElementRange& piece : owned) {
    for (const models::ParamInfo& info : params.infos()) {
      const ElementRange part = Intersect(piece, {info.offset, info.offset + info.size});
      if (part.size() == 0) continue;
      ops::AdamWOptions tensor_options = options;
      if (!info.weight_decay) tensor_options.weight_decay = 0.0;
      const int64_t moment = at + part.begin - piece.begin;
      ops::AdamWUpdate(params.values() + part.begin, params.grads() + part.begin,
                       shard.m.data() + moment, shard.v.data() + moment, part.size(),
                       tensor_options, step, clip_scale);
    }
    at += piece.size();
  }
  params.ZeroGrads();
  return OnPieces(&AllGatherFromOwners, layout, params.values(), {0, params.size()});
}

absl::Status ModelStageWork::ExportOptimizerState() {
  if (!Sharded()) return absl::OkStatus();
  for (const auto& [index, chunk] : chunks_) {
    auto it = shard_states_.find(index);
    if (it == shard_states_.end()) continue;  // no update yet (the same on every member)
    const int64_t n = chunk->params().size();
    const ShardLayout& layout = LayoutOf(index);
    OptimizerState& full = FullState(index);
    for (auto [from, to] : {std::pair{&it->second.m, &full.m}, std::pair{&it->second.v, &full.v}}) {
      to->assign(n, 0.f);
      int64_t at = 0;
      for (const ElementRange& piece : OwnedPieces(layout)) {
        std::copy(from->begin() + at, from->begin() + at + piece.size(), to->begin() + piece.begin);
        at += piece.size();
      }
      RETURN_IF_ERROR(OnPieces(&AllGatherFromOwners, layout, to->data(), {0, n}));
    }
  }
  return absl::OkStatus();
}

void ModelStageWork::ReleaseExportedOptimizerState() {
  if (!Sharded()) return;
  for (const auto& [index, state] : shard_states_) FullState(index) = OptimizerState{};
}

int64_t ModelStageWork::OptimizerStateBytes() const {
  int64_t floats = 0;
  auto add = [&floats](const std::map<int, OptimizerState>& states, int index) {
    auto it = states.find(index);
    if (it != states.end()) floats += it->second.m.size() + it->second.v.size();
  };
  for (const auto& [index, chunk] : chunks_) {
    add(shard_states_, index);
    if (optimizer_.states == nullptr) {
      add(states_, index);
    } else if (index < static_cast<int>(optimizer_.states->size())) {
      const OptimizerState& full = (*optimizer_.states)[index];
      floats += full.m.size() + full.v.size();
    }
  }
  return floats * int64_t{sizeof(float)};
}

absl::Status GatherReplicaLosses(Collective* group, std::vector<double>* losses) {
  if (group == nullptr) return absl::OkStatus();
  std::vector<double> all(losses->size() * group->size());
  std::vector<double> values;
  for (size_t mb = 0; mb < losses->size(); ++mb) {
    RETURN_IF_ERROR(group->AllGatherScalar((*losses)[mb], &values));
    for (int d = 0; d < group->size(); ++d) all[d * losses->size() + mb] = values[d];
  }
  *losses = std::move(all);
  return absl::OkStatus();
}

absl::Status ModelStageWork::GatherLosses(std::vector<double>* losses) {
  return GatherReplicaLosses(place_.group, losses);
}

namespace {
void SleepMicros(double us) {
  if (us <= 0) return;
  // Sleep most of it, spin the rest: durations stay accurate at tens of microseconds.
  auto end = std::chrono::steady_clock::now() + std::chrono::duration<double, std::micro>(us);
  if (us > 200) std::this_thread::sleep_for(std::chrono::duration<double, std::micro>(us - 100));
  while (std::chrono::steady_clock::now() < end) {
  }
}
}  // namespace

SyntheticStageWork::SyntheticStageWork(SyntheticDurations durations, int num_chunks)
    : d_(durations), num_chunks_(num_chunks) {}

absl::Status SyntheticStageWork::Forward(int chunk, int, const Payload*, Payload* output,
                                         double* loss) {
  SleepMicros(d_.forward_us);
  if (chunk + 1 == num_chunks_) {
    *loss = 0.0;
  } else {
    output->assign(d_.payload_floats, 1.0f);
  }
  return absl::OkStatus();
}

absl::Status SyntheticStageWork::BackwardInput(int chunk, int, const Payload*,
                                               Payload* input_grad) {
  SleepMicros(d_.backward_input_us);
  if (chunk > 0) input_grad->assign(d_.payload_floats, 1.0f);
  return absl::OkStatus();
}

absl::Status SyntheticStageWork::BackwardWeights(int, int) {
  SleepMicros(d_.backward_weight_us);
  return absl::OkStatus();
}

absl::Status SyntheticStageWork::Backward(int chunk, int mb, const Payload* grad,
                                          Payload* input_grad) {
  if (absl::Status s = BackwardInput(chunk, mb, grad, input_grad); !s.ok()) return s;
  return BackwardWeights(chunk, mb);
}

absl::Status StageWork::RunSubStep(const SubStepOrder& order, const Payload*, Payload*, double*) {
  return absl::UnimplementedError(
      absl::StrCat("this stage's work runs whole actions only, not ", SubStepOrderToString(order)));
}

SubStepLayout ModelStageWork::SubStepLayoutOf() const {
  SubStepLayout layout;
  for (const auto& [index, chunk] : chunks_) {
    ChunkLayers& layers = layout[index];
    layers.first_layer = chunk->spec().first_layer;
    for (int l = chunk->spec().first_layer; l < chunk->spec().end_layer; ++l) {
      layers.is_moe.push_back(chunk->config().layers[l].mlp == models::MlpKind::kMoe);
    }
  }
  return layout;
}

namespace {

models::LayerPart ToLayerPart(SubStepKind kind) {
  switch (kind) {
    case SubStepKind::kAttention:
      return models::LayerPart::kAttention;
    case SubStepKind::kDispatch:
      return models::LayerPart::kDispatch;
    case SubStepKind::kExperts:
      return models::LayerPart::kExperts;
    case SubStepKind::kCombine:
      return models::LayerPart::kCombine;
    default:
      return models::LayerPart::kRest;
  }
}

}  // namespace

absl::Status ModelStageWork::RunSubStep(const SubStepOrder& order, const Payload* input,
                                        Payload* output, double* loss) {
  const Action& a = order.step.action;
  const int mb = a.microbatch;
  if (order.whole) {
    switch (a.kind) {
      case ActionKind::kForward:
        return Forward(a.chunk, mb, input, output, loss);
      case ActionKind::kBackwardInput:
        return BackwardInput(a.chunk, mb, input, output);
      case ActionKind::kBackwardWeight:
        return BackwardWeights(a.chunk, mb);
      default:
        return Backward(a.chunk, mb, input, output);
    }
  }
  if (a.kind == ActionKind::kForward && !step_status_.ok()) return step_status_;
  ASSIGN_OR_RETURN(Chunk * c, Get(a.chunk));
  const models::LayerPartRef part{order.step.layer, ToLayerPart(order.step.part)};
  const bool first = order.index == 0;
  switch (a.kind) {
    case ActionKind::kForward:
      if (first) RETURN_IF_ERROR(BeginForward(c, a.chunk, mb, input));
      RETURN_IF_ERROR(c->ForwardPart(mb, part));
      return order.last() ? EndForward(c, a.chunk, mb, output, loss) : absl::OkStatus();
    case ActionKind::kBackwardWeight:
      if (first) RETURN_IF_ERROR(c->BackwardWeightsBegin(mb));
      RETURN_IF_ERROR(c->BackwardWeightsPart(mb, part));
      return order.last() ? c->BackwardWeightsEnd(mb) : absl::OkStatus();
    default:  // I, or the fused B: its I in parts, then its W whole
      if (first) RETURN_IF_ERROR(CheckGradient(*c, a.chunk, mb, input));
      if (first) RETURN_IF_ERROR(c->BackwardInputBegin(mb, input ? input->data() : nullptr));
      RETURN_IF_ERROR(c->BackwardInputPart(mb, part));
      if (!order.last()) return absl::OkStatus();
      RETURN_IF_ERROR(c->BackwardInputEnd(mb));
      CopyInputGrad(c, mb, output);
      // (ModelStageWork's: the step's last B of a chunk reports its weight-gradient parts.)
      return a.kind == ActionKind::kBackward ? BackwardWeights(a.chunk, mb) : absl::OkStatus();
  }
}

std::string OptimizerStateSharding(int dp, int ep, int zero) {
  if (zero == 1 && ep > 1) {
    return absl::StrCat(", experts split over ep ", ep, ", ZeRO-1: dense over ", dp,
                        " replicas, experts over edp ", dp / ep);
  }
  if (zero == 1) return absl::StrCat(", ZeRO-1 over ", dp, " replicas");
  return ep > 1 ? absl::StrCat(", experts split over ep ", ep) : "";
}

}  // namespace stagehand::runtime
