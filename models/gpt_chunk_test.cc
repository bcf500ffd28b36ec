// Tests for GptChunk: whole-model gradients against float64 finite differences, chunked ==
// unchunked, I+W == fused, and clear errors for misuse and impossible cuts.
#include "models/gpt_chunk.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "models/test_configs.h"

namespace stagehand::models {
namespace {

constexpr int kB = 2, kT = 5;

GptConfig SmallConfig(bool heterogeneous) {
  GptConfig c = UniformGpt(3, 8, 2, 11, 8, 42);
  if (heterogeneous) {
    c.layers[1].attention = AttentionKind::kNone;
    c.layers[2].mlp = MlpKind::kNone;
  }
  return c;
}

// Llama-style: RMSNorm, SwiGLU, RoPE, grouped-query attention, untied head, no biases.
GptConfig LlamaConfig() { return testing::LlamaStyle(3, 8, 2, 1, 12, 8, 42); }

// Every block kind in one stack.
GptConfig MixedConfig() { return testing::MixedBlocks(4, 8, 2, 8, 42); }

struct Batch {
  std::vector<int32_t> tokens, targets;
};

Batch RandomBatch(int vocab, int seed) {
  std::mt19937 rng(seed);
  Batch b;
  for (int i = 0; i < kB * kT; ++i) {
    b.tokens.push_back(rng() % vocab);
    b.targets.push_back(rng() % vocab);
  }
  return b;
}

// Runs F then (optionally) I+W through consecutive chunks; returns the loss.
double RunChunks(std::vector<std::unique_ptr<GptChunk<double>>>& chunks, const Batch& batch,
                 bool backward, int mb = 0) {
  const double* x = nullptr;
  for (auto& c : chunks) {
    EXPECT_TRUE(c->Forward(mb, batch.tokens.data(), x, batch.targets.data()).ok());
    x = c->output(mb);
  }
  // The objective: the language-model loss plus the MoE layers' auxiliary losses.
  double loss = chunks.back()->loss(mb);
  for (auto& c : chunks) loss += c->aux_loss(mb);
  if (!backward) {
    for (auto& c : chunks) c->Release(mb);
    return loss;
  }
  std::vector<double> dout;
  for (int i = static_cast<int>(chunks.size()) - 1; i >= 0; --i) {
    EXPECT_TRUE(
        chunks[i]->BackwardInput(mb, i + 1 == (int)chunks.size() ? nullptr : dout.data()).ok());
    if (i > 0) {
      const double* g = chunks[i]->input_grad(mb);
      dout.assign(g, g + kB * kT * chunks[i]->config().d_model);
    }
    EXPECT_TRUE(chunks[i]->BackwardWeights(mb).ok());
  }
  for (auto& c : chunks) c->FoldTiedGradients();
  return loss;
}

std::vector<std::unique_ptr<GptChunk<double>>> MakeChunks(const GptConfig& config,
                                                          std::vector<int> sizes) {
  auto specs = CutLayersAs(static_cast<int>(config.layers.size()), sizes);
  EXPECT_TRUE(specs.ok()) << specs.status();
  std::vector<std::unique_ptr<GptChunk<double>>> chunks;
  for (const ChunkSpec& spec : *specs) {
    auto chunk = GptChunk<double>::Create(config, spec, ChunkOptions{kB, kT, 1});
    EXPECT_TRUE(chunk.ok()) << chunk.status();
    chunks.push_back(std::move(*chunk));
  }
  return chunks;
}

void CheckWholeModelGradients(const GptConfig& config) {
  auto chunks = MakeChunks(config, {static_cast<int>(config.layers.size())});
  Batch batch = RandomBatch(config.vocab_size, 7);
  RunChunks(chunks, batch, /*backward=*/true);
  ParameterSet<double>& p = chunks[0]->params();
  std::mt19937 rng(3);
  int checked = 0;
  for (const ParamInfo& info : p.infos()) {
    for (int k = 0; k < 4; ++k) {
      int64_t i = info.offset + rng() % info.size;
      double saved = p.values()[i], h = 1e-5;
      p.values()[i] = saved + h;
      double plus = RunChunks(chunks, batch, false);
      p.values()[i] = saved - h;
      double minus = RunChunks(chunks, batch, false);
      p.values()[i] = saved;
      double numeric = (plus - minus) / (2 * h), analytic = p.grads()[i];
      EXPECT_NEAR(analytic, numeric, 1e-7 + 1e-5 * std::abs(numeric))
          << info.name << "[" << i - info.offset << "]";
      ++checked;
    }
  }
  EXPECT_GT(checked, 40);
}

TEST(GptChunkTest, WholeModelGradientsMatchFiniteDifferences) {
  CheckWholeModelGradients(SmallConfig(false));
}

TEST(GptChunkTest, HeterogeneousModelGradientsMatchFiniteDifferences) {
  CheckWholeModelGradients(SmallConfig(true));
}

TEST(GptChunkTest, LlamaStyleModelGradientsMatchFiniteDifferences) {
  CheckWholeModelGradients(LlamaConfig());
}

TEST(GptChunkTest, MixedBlockKindsGradientsMatchFiniteDifferences) {
  CheckWholeModelGradients(MixedConfig());
}

// MoE layers (router, capacity with drops, shared expert, load-balancing and z losses) between
// dense ones; GELU experts with biases, and SwiGLU experts dropless without.
GptConfig MoeConfig(bool llama) {
  GptConfig c = llama ? LlamaConfig() : SmallConfig(false);
  c.layers[1].mlp = MlpKind::kMoe;
  c.layers[1].ffn_hidden = 0;
  c.layers[1].moe = MoeSpec{4, 2, 6, llama ? 0 : 5, llama ? 0.0 : 1.0, 0.1, 0.01};
  if (llama) {
    c.layers[2].mlp = MlpKind::kMoe;
    c.layers[2].ffn_hidden = 0;
    c.layers[2].moe = MoeSpec{3, 1, 7, 4, 0.0, 0.05, 0.0};
  }
  return c;
}

TEST(GptChunkTest, MoeModelGradientsMatchFiniteDifferences) {
  CheckWholeModelGradients(MoeConfig(false));
  CheckWholeModelGradients(MoeConfig(true));
}

TEST(GptChunkTest, MoeStatsCountEveryChoiceOfTrainedMicrobatches) {
  const GptConfig config = MoeConfig(false);
  auto chunks = MakeChunks(config, {3});
  Batch batch = RandomBatch(config.vocab_size, 5);
  RunChunks(chunks, batch, /*backward=*/false);  // evaluation: not counted
  EXPECT_TRUE(chunks[0]->TakeMoeStats().empty());
  RunChunks(chunks, batch, /*backward=*/true, 0);
  RunChunks(chunks, batch, /*backward=*/true, 1);
  std::map<int, MoeLayerStats> stats = chunks[0]->TakeMoeStats();
  ASSERT_EQ(stats.size(), 1u);
  const MoeLayerStats& layer = stats.at(1);
  int64_t total = 0;
  for (int64_t n : layer.tokens_per_expert) total += n;
  EXPECT_EQ(total, 2 * kB * kT * 2);  // two microbatches of N tokens, top-2
  EXPECT_EQ(layer.microbatches, 2);
  EXPECT_GT(layer.aux_loss, 0.0);
  EXPECT_TRUE(chunks[0]->TakeMoeStats().empty());  // taken
}

TEST(GptChunkTest, MoeParametersAreNamedPerExpert) {
  auto chunks = MakeChunks(MoeConfig(false), {3});
  const ParameterSet<double>& p = chunks[0]->params();
  for (const char* name :
       {"h.1.ln_2.weight", "h.1.mlp.router.weight", "h.1.mlp.experts.0.c_fc.weight",
        "h.1.mlp.experts.3.c_proj.bias", "h.1.mlp.shared_expert.c_fc.weight"}) {
    EXPECT_TRUE(p.contains(name)) << name;
  }
  EXPECT_FALSE(p.contains("h.1.mlp.c_fc.weight"));
  EXPECT_FALSE(p.contains("h.1.mlp.experts.4.c_fc.weight"));
  EXPECT_EQ(p.size(), GptParameterBound(MoeConfig(false)));
}

// --ep's layout: member m of S holds experts [m E/S, (m+1) E/S) of every MoE layer under their
// global names, marked with their ids, with the whole chunk's values (initialised by name);
// the router, the shared expert and the rest are whole. A shard cannot evaluate alone.
TEST(GptChunkTest, ExpertShardHoldsItsExpertsUnderGlobalNames) {
  const GptConfig config = MoeConfig(false);  // layer 1: 4 experts
  auto whole = MakeChunks(config, {3});
  ChunkOptions options{kB, kT, 1};
  options.expert_shard = {1, 2};
  auto shard = GptChunk<double>::Create(config, ChunkSpec{0, 3, true, true}, options);
  ASSERT_TRUE(shard.ok()) << shard.status();
  const ParameterSet<double>& p = (*shard)->params();
  for (const char* name : {"h.0.mlp.experts.0.c_fc.weight", "h.1.mlp.experts.1.c_proj.weight"}) {
    EXPECT_FALSE(p.contains(name)) << name;
  }
  int64_t expert_floats = 0;
  for (const ParamInfo& info : whole[0]->params().infos()) {
    if (info.expert >= 0) expert_floats += info.size;
    const bool held = info.expert < 0 || info.expert >= 2;
    ASSERT_EQ(p.contains(info.name), held) << info.name;
    if (!held) continue;
    for (const ParamInfo& local : p.infos()) {
      if (local.name != info.name) continue;
      EXPECT_EQ(local.expert, info.expert) << info.name;
      for (int64_t i = 0; i < info.size; ++i) {
        ASSERT_EQ(p.values()[local.offset + i], whole[0]->params().values()[info.offset + i])
            << info.name;
      }
    }
  }
  EXPECT_GT(expert_floats, 0);
  EXPECT_EQ(p.size(), whole[0]->params().size() - expert_floats / 2);
  Batch batch = RandomBatch(config.vocab_size, 5);
  EXPECT_EQ((*shard)->Forward(-1, batch.tokens.data(), nullptr, batch.targets.data()).code(),
            absl::StatusCode::kFailedPrecondition);
  options.expert_shard = {0, 3};
  EXPECT_EQ(GptChunk<double>::Create(config, ChunkSpec{0, 3, true, true}, options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.expert_shard = {2, 2};
  EXPECT_EQ(GptChunk<double>::Create(config, ChunkSpec{0, 3, true, true}, options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

void CheckChunkedMatchesWhole(const GptConfig& config) {
  const int L = static_cast<int>(config.layers.size());
  auto whole = MakeChunks(config, {L});
  auto parts = MakeChunks(config, std::vector<int>(L, 1));
  Batch batch = RandomBatch(config.vocab_size, 11);
  double loss_whole = RunChunks(whole, batch, true);
  double loss_parts = RunChunks(parts, batch, true);
  EXPECT_NEAR(loss_whole, loss_parts, 1e-13);
  for (const ParamInfo& info : whole[0]->params().infos()) {
    std::vector<double> sum(info.size, 0.0);
    int holders = 0;
    for (auto& c : parts) {
      if (!c->params().contains(info.name)) continue;
      ++holders;
      const double* v = c->params().value(info.name);
      double* g = c->params().grad(info.name);
      for (int64_t i = 0; i < info.size; ++i) {
        EXPECT_EQ(v[i], whole[0]->params().value(info.name)[i]) << info.name;
        sum[i] += g[i];
      }
    }
    ASSERT_EQ(holders, info.name == "wte" && config.tied_head ? 2 : 1) << info.name;
    for (int64_t i = 0; i < info.size; ++i) {
      EXPECT_NEAR(sum[i], whole[0]->params().grads()[info.offset + i], 1e-12) << info.name;
    }
  }
  if (config.tied_head) {
    EXPECT_TRUE(parts.back()->params().infos()[0].tied_copy);
  } else {
    EXPECT_FALSE(parts.back()->params().contains("wte"));
    EXPECT_TRUE(parts.back()->params().contains("lm_head.weight"));
  }
}

TEST(GptChunkTest, ChunkedModelMatchesWholeModel) {
  CheckChunkedMatchesWhole(MoeConfig(true));
  CheckChunkedMatchesWhole(SmallConfig(true));
  CheckChunkedMatchesWhole(LlamaConfig());
  CheckChunkedMatchesWhole(MixedConfig());
}

// Grouped-query attention and SwiGLU change the tensor shapes the config promises, and the
// parameter count is exact.
TEST(GptChunkTest, ParameterShapesFollowTheConfig) {
  GptConfig config = LlamaConfig();
  auto chunks = MakeChunks(config, {3});
  const ParameterSet<double>& p = chunks[0]->params();
  int64_t total = 0;
  for (const ParamInfo& info : p.infos()) {
    total += info.size;
    if (info.name == "h.0.attn.c_attn.weight") EXPECT_EQ(info.shape, (std::vector<int64_t>{16, 8}));
    if (info.name == "h.0.mlp.c_fc.weight") EXPECT_EQ(info.shape, (std::vector<int64_t>{24, 8}));
    if (info.name == "h.0.mlp.c_proj.weight") EXPECT_EQ(info.shape, (std::vector<int64_t>{8, 12}));
    EXPECT_EQ(info.name.find("bias"), std::string::npos) << info.name;
  }
  EXPECT_FALSE(p.contains("wpe"));
  EXPECT_EQ(total, GptParameterBound(config));
  auto mixed = MakeChunks(MixedConfig(), {4});
  int64_t mixed_total = 0;
  for (const ParamInfo& info : mixed[0]->params().infos()) mixed_total += info.size;
  EXPECT_EQ(mixed_total, GptParameterBound(MixedConfig()));
}

// Every gradient of `a` and `b` equal, tensor by tensor.
void ExpectGradientsBitwise(GptChunk<double>& a, GptChunk<double>& b, const std::string& what) {
  for (const ParamInfo& info : a.params().infos()) {
    for (int64_t i = info.offset; i < info.offset + info.size; ++i) {
      ASSERT_EQ(a.params().grads()[i], b.params().grads()[i]) << what << " " << info.name;
    }
  }
}

// The fused B runs layer by layer (I then W of each layer, from the last): bit for bit the
// split I then W, for every block kind, MoE layers, a tied one-chunk model and a model cut in
// two (a chunk with the head, then one with the embedding, each fed the other's gradients).
TEST(GptChunkTest, SplitBackwardEqualsFusedBitwise) {
  for (const auto& [name, config] :
       std::vector<std::pair<std::string, GptConfig>>{{"small", SmallConfig(false)},
                                                      {"heterogeneous", SmallConfig(true)},
                                                      {"llama", LlamaConfig()},
                                                      {"mixed", MixedConfig()},
                                                      {"moe", MoeConfig(false)},
                                                      {"moe llama", MoeConfig(true)}}) {
    const int L = static_cast<int>(config.layers.size());
    for (const std::vector<int>& cut : {std::vector<int>{L}, std::vector<int>{L - 2, 2}}) {
      const std::string what = absl::StrCat(name, " cut in ", cut.size());
      auto split = MakeChunks(config, cut);
      auto fused = MakeChunks(config, cut);
      const Batch batch = RandomBatch(config.vocab_size, 5);
      RunChunks(split, batch, /*backward=*/true);
      const double* x = nullptr;
      for (auto& c : fused) {
        ASSERT_TRUE(c->Forward(0, batch.tokens.data(), x, batch.targets.data()).ok());
        x = c->output(0);
      }
      std::vector<double> dout, input_grad;
      for (int i = static_cast<int>(cut.size()) - 1; i >= 0; --i) {
        input_grad.assign(kB * kT * config.d_model, 0.0);
        ASSERT_TRUE(fused[i]
                        ->Backward(0, dout.empty() ? nullptr : dout.data(),
                                   i > 0 ? input_grad.data() : nullptr)
                        .ok())
            << what;
        EXPECT_EQ(fused[i]->inflight(), 0) << what;
        dout = input_grad;
      }
      for (size_t i = 0; i < cut.size(); ++i) {
        fused[i]->FoldTiedGradients();
        ExpectGradientsBitwise(*split[i], *fused[i], what);
      }
    }
  }
}

// Whether every tensor whose name starts with one of `prefixes` has `want`'s gradient (or, with
// `want` null, a zero gradient) in `got`.
bool GradientsAre(const GptChunk<double>& got, const GptChunk<double>* want,
                  const std::vector<std::string>& prefixes) {
  for (const ParamInfo& info : got.params().infos()) {
    bool named = false;
    for (const std::string& prefix : prefixes) named = named || absl::StartsWith(info.name, prefix);
    for (int64_t i = info.offset; named && i < info.offset + info.size; ++i) {
      if (got.params().grads()[i] != (want ? want->params().grads()[i] : 0.0)) return false;
    }
  }
  return true;
}

// The fused B's reports: the head's piece, then each layer's pieces from the last (a dense
// layer's MLP then its rest, an MoE layer whole); at each, the tensors of every piece reported
// so far are final and the next piece's are not written yet.
TEST(GptChunkTest, FusedBackwardReportsEachLayersWeightGradientsOnceFinal) {
  const GptConfig config = MoeConfig(false);  // dense, MoE, dense
  auto reference = MakeChunks(config, {3});
  auto fused = MakeChunks(config, {3});
  const Batch batch = RandomBatch(config.vocab_size, 5);
  RunChunks(reference, batch, /*backward=*/true);
  ASSERT_TRUE(fused[0]->Forward(0, batch.tokens.data(), nullptr, batch.targets.data()).ok());
  // Tensor name prefixes of each piece, in report order.
  const std::vector<std::vector<std::string>> pieces = {
      {"ln_f."}, {"h.2.mlp."}, {"h.2.ln_", "h.2.attn."},
      {"h.1."},  {"h.0.mlp."}, {"h.0.ln_", "h.0.attn."}};
  int reported = 0;
  const auto report = [&] {
    ASSERT_LT(reported, static_cast<int>(pieces.size()));
    for (int k = 0; k <= reported; ++k) {
      EXPECT_TRUE(GradientsAre(*fused[0], reference[0].get(), pieces[k]))
          << "piece " << k << " at report " << reported;
    }
    if (reported + 1 < static_cast<int>(pieces.size())) {
      EXPECT_TRUE(GradientsAre(*fused[0], nullptr, pieces[reported + 1]))
          << "piece " << reported + 1 << " written before report " << reported;
    }
    ++reported;
  };
  ASSERT_TRUE(fused[0]->Backward(0, nullptr, nullptr, report).ok());
  EXPECT_EQ(reported, static_cast<int>(pieces.size()));
}

// Runs the parts of two passes alternately, one part of each in turn (an overlapped pair):
// `first` begins first and each ends after its last part.
void InterleaveParts(GptChunk<double>& c, ChunkPass first, int first_mb, ChunkPass second,
                     int second_mb, const Batch& batch) {
  const auto begin = [&](ChunkPass pass, int mb) {
    if (pass == ChunkPass::kForward) {
      return c.ForwardBegin(mb, batch.tokens.data(), nullptr, batch.targets.data());
    }
    return pass == ChunkPass::kBackwardInput ? c.BackwardInputBegin(mb, nullptr)
                                             : c.BackwardWeightsBegin(mb);
  };
  const auto part = [&](ChunkPass pass, int mb, const LayerPartRef& p) {
    if (pass == ChunkPass::kForward) return c.ForwardPart(mb, p);
    return pass == ChunkPass::kBackwardInput ? c.BackwardInputPart(mb, p)
                                             : c.BackwardWeightsPart(mb, p);
  };
  const auto end = [&](ChunkPass pass, int mb) {
    if (pass == ChunkPass::kForward) return c.ForwardEnd(mb);
    return pass == ChunkPass::kBackwardInput ? c.BackwardInputEnd(mb) : c.BackwardWeightsEnd(mb);
  };
  const std::vector<LayerPartRef> a = c.Parts(first), b = c.Parts(second);
  ASSERT_TRUE(begin(first, first_mb).ok());
  ASSERT_TRUE(begin(second, second_mb).ok());
  for (size_t k = 0; k < std::max(a.size(), b.size()); ++k) {
    if (k < a.size()) {
      ASSERT_TRUE(part(first, first_mb, a[k]).ok());
    }
    if (k < b.size()) {
      ASSERT_TRUE(part(second, second_mb, b[k]).ok());
    }
    if (k + 1 == a.size()) {
      ASSERT_TRUE(end(first, first_mb).ok());
    }
    if (k + 1 == b.size()) {
      ASSERT_TRUE(end(second, second_mb).ok());
    }
  }
}

TEST(GptChunkTest, InterleavedLayerPartsEqualWholePassesBitwise) {
  const GptConfig config = MoeConfig(true);  // two MoE layers, shared experts
  auto whole = MakeChunks(config, {3});
  auto parts = MakeChunks(config, {3});
  GptChunk<double>& w = *whole[0];
  GptChunk<double>& p = *parts[0];
  ASSERT_EQ(p.Parts(ChunkPass::kForward).size(), 11u);  // dense, 5 + 5 MoE parts
  ASSERT_EQ(p.Parts(ChunkPass::kBackwardWeights).size(), 7u);
  const Batch batch = RandomBatch(config.vocab_size, 9);
  // whole: F0 F1 I0 W0 I1 W1. parts: F0, then F1 with I0 part by part, then I1 with W0, W1.
  for (int mb : {0, 1}) {
    ASSERT_TRUE(w.Forward(mb, batch.tokens.data(), nullptr, batch.targets.data()).ok());
  }
  const double whole_loss = w.loss(0), whole_aux = w.aux_loss(0);
  for (int mb : {0, 1}) {
    ASSERT_TRUE(w.BackwardInput(mb, nullptr).ok());
    ASSERT_TRUE(w.BackwardWeights(mb).ok());
  }
  ASSERT_TRUE(p.ForwardBegin(0, batch.tokens.data(), nullptr, batch.targets.data()).ok());
  for (const LayerPartRef& part : p.Parts(ChunkPass::kForward)) {
    ASSERT_TRUE(p.ForwardPart(0, part).ok());
  }
  ASSERT_TRUE(p.ForwardEnd(0).ok());
  EXPECT_EQ(p.loss(0), whole_loss);
  EXPECT_EQ(p.aux_loss(0), whole_aux);
  InterleaveParts(p, ChunkPass::kForward, 1, ChunkPass::kBackwardInput, 0, batch);
  EXPECT_EQ(p.loss(1), whole_loss);  // the same batch
  InterleaveParts(p, ChunkPass::kBackwardInput, 1, ChunkPass::kBackwardWeights, 0, batch);
  ASSERT_TRUE(p.BackwardWeightsBegin(1).ok());
  for (const LayerPartRef& part : p.Parts(ChunkPass::kBackwardWeights)) {
    ASSERT_TRUE(p.BackwardWeightsPart(1, part).ok());
  }
  ASSERT_TRUE(p.BackwardWeightsEnd(1).ok());
  EXPECT_EQ(p.inflight(), 0);
  w.FoldTiedGradients();
  p.FoldTiedGradients();
  for (const ParamInfo& info : w.params().infos()) {
    for (int64_t i = info.offset; i < info.offset + info.size; ++i) {
      ASSERT_EQ(w.params().grads()[i], p.params().grads()[i]) << info.name;
    }
  }
  std::map<int, MoeLayerStats> ws = w.TakeMoeStats(), ps = p.TakeMoeStats();
  ASSERT_EQ(ws.size(), 2u);
  for (const auto& [layer, stats] : ws) {
    EXPECT_EQ(ps.at(layer).tokens_per_expert, stats.tokens_per_expert);
    EXPECT_EQ(ps.at(layer).aux_loss, stats.aux_loss);
  }
}

TEST(GptChunkTest, LayerPartsOutOfOrderAreErrors) {
  const GptConfig config = MoeConfig(false);
  auto chunks = MakeChunks(config, {3});
  GptChunk<double>& c = *chunks[0];
  const Batch batch = RandomBatch(config.vocab_size, 2);
  const std::vector<LayerPartRef> parts = c.Parts(ChunkPass::kForward);
  EXPECT_EQ(c.ForwardPart(0, parts[0]).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(c.ForwardBegin(0, batch.tokens.data(), nullptr, batch.targets.data()).ok());
  absl::Status skipped = c.ForwardPart(0, parts[1]);
  EXPECT_EQ(skipped.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(skipped.message().find("next: L0 rest"), std::string::npos) << skipped;
  ASSERT_TRUE(c.ForwardPart(0, parts[0]).ok());
  EXPECT_EQ(c.ForwardEnd(0).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(c.output(0), nullptr);  // not ended
  EXPECT_EQ(c.BackwardInputBegin(0, nullptr).code(), absl::StatusCode::kFailedPrecondition);
  for (size_t k = 1; k < parts.size(); ++k) ASSERT_TRUE(c.ForwardPart(0, parts[k]).ok());
  ASSERT_TRUE(c.ForwardEnd(0).ok());
  ASSERT_TRUE(c.BackwardInputBegin(0, nullptr).ok());
  EXPECT_EQ(c.BackwardInputBegin(0, nullptr).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(c.BackwardWeightsBegin(0).code(), absl::StatusCode::kFailedPrecondition);
}

TEST(GptChunkTest, ManyMicrobatchesInFlightAreIndependent) {
  GptConfig config = SmallConfig(false);
  auto a = MakeChunks(config, {3});
  auto b = MakeChunks(config, {3});
  Batch b0 = RandomBatch(config.vocab_size, 1), b1 = RandomBatch(config.vocab_size, 2);
  // a: F0 F1 B1 B0 (interleaved, like a pipeline); b: F0 B0 F1 B1 (sequential).
  ASSERT_TRUE(a[0]->Forward(0, b0.tokens.data(), nullptr, b0.targets.data()).ok());
  ASSERT_TRUE(a[0]->Forward(1, b1.tokens.data(), nullptr, b1.targets.data()).ok());
  EXPECT_EQ(a[0]->inflight(), 2);
  ASSERT_TRUE(a[0]->Backward(1, nullptr).ok());
  ASSERT_TRUE(a[0]->Backward(0, nullptr).ok());
  a[0]->FoldTiedGradients();
  EXPECT_EQ(a[0]->inflight(), 0);
  RunChunks(b, b0, true, 0);
  RunChunks(b, b1, true, 1);
  for (int64_t i = 0; i < a[0]->params().size(); ++i) {
    ASSERT_NEAR(a[0]->params().grads()[i], b[0]->params().grads()[i], 1e-15);
  }
}

TEST(GptChunkTest, ProbabilitiesAreTheSoftmaxBehindTheLoss) {
  GptConfig config = SmallConfig(false);
  auto chunk =
      GptChunk<double>::Create(config, ChunkSpec{0, 3, true, true}, ChunkOptions{kB, kT, 1});
  ASSERT_TRUE(chunk.ok());
  Batch batch = RandomBatch(config.vocab_size, 3);
  ASSERT_TRUE((*chunk)->Forward(0, batch.tokens.data(), nullptr, batch.targets.data()).ok());
  const double* p = (*chunk)->probabilities(0);
  ASSERT_NE(p, nullptr);
  const int V = config.vocab_size;
  double loss = 0;
  for (int n = 0; n < kB * kT; ++n) {
    double sum = 0;
    for (int v = 0; v < V; ++v) sum += p[n * V + v];
    EXPECT_NEAR(sum, 1.0, 1e-12);
    loss -= std::log(p[n * V + batch.targets[n]]);
  }
  EXPECT_NEAR(loss / (kB * kT), (*chunk)->loss(0), 1e-12);
  ASSERT_TRUE((*chunk)->BackwardInput(0, nullptr).ok());
  EXPECT_EQ((*chunk)->probabilities(0), nullptr);
  EXPECT_EQ((*chunk)->probabilities(1), nullptr);
}

TEST(GptChunkTest, MisuseIsAnErrorNotACrash) {
  GptConfig config = SmallConfig(false);
  auto chunks = MakeChunks(config, {3});
  GptChunk<double>& c = *chunks[0];
  Batch batch = RandomBatch(config.vocab_size, 1);
  EXPECT_EQ(c.BackwardInput(0, nullptr).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(c.Forward(0, batch.tokens.data(), nullptr, batch.targets.data()).ok());
  EXPECT_EQ(c.Forward(0, batch.tokens.data(), nullptr, batch.targets.data()).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(c.BackwardWeights(0).code(), absl::StatusCode::kFailedPrecondition);
  batch.tokens[3] = config.vocab_size;
  absl::Status bad = c.Forward(1, batch.tokens.data(), nullptr, batch.targets.data());
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("token id 11"), std::string::npos) << bad;
}

TEST(GptChunkTest, ImpossibleCutsAreErrors) {
  EXPECT_FALSE(CutLayers(2, 4).ok());
  EXPECT_FALSE(CutLayers(4, 0).ok());
  EXPECT_FALSE(CutLayersAs(4, {2, 1}).ok());
  EXPECT_FALSE(CutLayersAs(4, {4, 0}).ok());
  auto cuts = CutLayers(7, 3);
  ASSERT_TRUE(cuts.ok());
  // 3 + 2 + 2, consecutive, no layer dropped or duplicated.
  EXPECT_EQ((*cuts)[0].end_layer, 3);
  EXPECT_EQ((*cuts)[1].first_layer, 3);
  EXPECT_EQ((*cuts)[2].end_layer, 7);
  EXPECT_TRUE((*cuts)[0].has_embedding && !(*cuts)[0].has_head);
  EXPECT_TRUE((*cuts)[2].has_head && !(*cuts)[2].has_embedding);
}

// Packed documents: rows of kPackT + 1 tokens, each a run of whole documents (>= 2 tokens).
constexpr int kPackT = 8;
const std::vector<std::vector<int>> kRowDocuments = {{3, 4, 2}, {5, 4}};

struct PackedRun {
  double loss_sum = 0;                                   // the loss times the tokens that count
  std::map<std::string, std::vector<double>> grad_sums;  // the gradients times the same
};

std::unique_ptr<GptChunk<double>> WholeChunk(const GptConfig& config, int B, int T, bool reset) {
  ChunkOptions options{B, T, 1};
  options.reset_position_ids = reset;
  auto chunk = GptChunk<double>::Create(
      config, ChunkSpec{0, static_cast<int>(config.layers.size()), true, true}, options);
  EXPECT_TRUE(chunk.ok()) << chunk.status();
  return std::move(*chunk);
}

// F, I and W of one microbatch on a fresh whole-model chunk; loss and gradients scaled by
// `weight` (the number of tokens whose loss counts: the sums the mean was taken over).
PackedRun RunWeighted(const GptConfig& config, int B, int T, bool reset,
                      const std::vector<int32_t>& tokens, const std::vector<int32_t>& targets,
                      const PackedDocuments* documents, double weight) {
  auto chunk = WholeChunk(config, B, T, reset);
  EXPECT_TRUE(chunk->Forward(0, tokens.data(), nullptr, targets.data(), documents).ok());
  PackedRun run;
  run.loss_sum = chunk->loss(0) * weight;  // before W releases the microbatch
  EXPECT_GT(run.loss_sum, 0.0);
  EXPECT_TRUE(chunk->Backward(0, nullptr).ok());
  chunk->FoldTiedGradients();
  for (const ParamInfo& info : chunk->params().infos()) {
    if (info.tied_copy) continue;
    const double* g = chunk->params().grad(info.name);
    std::vector<double>& sum = run.grad_sums[info.name];
    for (int64_t i = 0; i < info.size; ++i) sum.push_back(g[i] * weight);
  }
  return run;
}

// A packed microbatch (per-document causal masks, positions restarting per document, the
// loss of each document's last token masked: its target is the next document's first) gives
// the loss and gradients of its documents run one by one, each as a plain sequence.
void CheckPackedEqualsDocumentsOneByOne(const GptConfig& config) {
  std::mt19937 rng(5);
  const int B = static_cast<int>(kRowDocuments.size());
  std::vector<int32_t> tokens, targets, doc_start;
  std::vector<uint8_t> loss_mask;
  PackedRun one_by_one;
  int counted = 0;
  for (const std::vector<int>& row : kRowDocuments) {
    std::vector<int32_t> stream;
    std::vector<int32_t> starts;
    for (int n : row) {
      std::vector<int32_t> doc;
      for (int i = 0; i < n; ++i) doc.push_back(rng() % config.vocab_size);
      starts.push_back(static_cast<int32_t>(stream.size()));
      stream.insert(stream.end(), doc.begin(), doc.end());
      // The document alone: n - 1 predictions, every one counted.
      const std::vector<int32_t> in(doc.begin(), doc.end() - 1), out(doc.begin() + 1, doc.end());
      PackedRun alone = RunWeighted(config, 1, n - 1, false, in, out, nullptr, n - 1);
      one_by_one.loss_sum += alone.loss_sum;
      for (auto& [name, g] : alone.grad_sums) {
        std::vector<double>& sum = one_by_one.grad_sums[name];
        sum.resize(g.size(), 0.0);
        for (size_t i = 0; i < g.size(); ++i) sum[i] += g[i];
      }
      counted += n - 1;
    }
    ASSERT_EQ(static_cast<int>(stream.size()), kPackT + 1);
    int current = 0;
    for (int t = 0; t < kPackT; ++t) {
      if (std::count(starts.begin(), starts.end(), t)) current = t;
      tokens.push_back(stream[t]);
      targets.push_back(stream[t + 1]);
      doc_start.push_back(current);
      loss_mask.push_back(std::count(starts.begin(), starts.end(), t + 1) ? 0 : 1);
    }
  }
  const PackedDocuments documents{doc_start.data(), loss_mask.data()};
  PackedRun packed = RunWeighted(config, B, kPackT, true, tokens, targets, &documents, counted);
  EXPECT_NEAR(packed.loss_sum, one_by_one.loss_sum, 1e-11 * std::abs(one_by_one.loss_sum));
  for (auto& [name, g] : packed.grad_sums) {
    const std::vector<double>& want = one_by_one.grad_sums.at(name);
    for (size_t i = 0; i < g.size(); ++i) {
      EXPECT_NEAR(g[i], want[i], 1e-11 + 1e-10 * std::abs(want[i])) << name << "[" << i << "]";
    }
  }
  // Not a test that cannot fail: without the document masks the same rows differ.
  const PackedDocuments mask_only{nullptr, loss_mask.data()};
  PackedRun crossing = RunWeighted(config, B, kPackT, true, tokens, targets, &mask_only, counted);
  EXPECT_GT(std::abs(crossing.loss_sum - one_by_one.loss_sum), 1e-6);
}

TEST(GptChunkTest, PackedMicrobatchEqualsItsDocumentsOneByOne) {
  CheckPackedEqualsDocumentsOneByOne(SmallConfig(false));  // learned positions, tied head
  CheckPackedEqualsDocumentsOneByOne(LlamaConfig());       // RoPE, grouped-query attention
  CheckPackedEqualsDocumentsOneByOne(MixedConfig());       // every block kind
}

TEST(GptChunkTest, MalformedPackedDocumentsAreErrors) {
  auto chunk = WholeChunk(SmallConfig(false), 1, 4, true);
  const std::vector<int32_t> tokens = {1, 2, 3, 4}, targets = {2, 3, 4, 5};
  const std::vector<int32_t> bad_start = {0, 0, 2, 1};  // 1 is neither 3 nor 2
  const PackedDocuments bad{bad_start.data(), nullptr};
  absl::Status s = chunk->Forward(0, tokens.data(), nullptr, targets.data(), &bad);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("doc_start[0, 3]=1"), std::string::npos) << s;
  const std::vector<int32_t> starts = {0, 0, 2, 2};
  const std::vector<uint8_t> bad_mask = {1, 2, 1, 1};
  const PackedDocuments bad2{starts.data(), bad_mask.data()};
  s = chunk->Forward(0, tokens.data(), nullptr, targets.data(), &bad2);
  EXPECT_NE(s.message().find("loss_mask[0, 1]=2"), std::string::npos) << s;
  // The chunk is still usable.
  const std::vector<uint8_t> none = {0, 0, 0, 0};
  const PackedDocuments all_masked{starts.data(), none.data()};
  ASSERT_TRUE(chunk->Forward(0, tokens.data(), nullptr, targets.data(), &all_masked).ok());
  EXPECT_EQ(chunk->loss(0), 0.0);
}

// Gradients of every tensor (tied copies once), by name.
std::map<std::string, std::vector<double>> Gradients(GptChunk<double>& chunk) {
  chunk.FoldTiedGradients();
  std::map<std::string, std::vector<double>> out;
  for (const ParamInfo& info : chunk.params().infos()) {
    if (info.tied_copy) continue;
    const double* g = chunk.params().grad(info.name);
    out[info.name].assign(g, g + info.size);
  }
  return out;
}

// Variable lengths: a microbatch of length 3 on a chunk built for 8 (whose state buffers a
// length-8 microbatch used first) gives bitwise the loss and gradients of a chunk built for 3;
// packed documents (doc_start, positions and mask of length 3) and MoE layers included.
void CheckShortMicrobatchEqualsAChunkOfItsLength(const GptConfig& config) {
  constexpr int kLong = 8, kShort = 3;
  std::mt19937 rng(9);
  std::vector<int32_t> tokens(kB * kLong), targets(kB * kLong);
  for (int32_t& t : tokens) t = rng() % config.vocab_size;
  for (int32_t& t : targets) t = rng() % config.vocab_size;
  const std::vector<int32_t> doc_start = {0, 1, 1, 0, 0, 2};  // (B, 3): two rows of documents
  const std::vector<uint8_t> loss_mask = {1, 1, 0, 1, 1, 1};
  const PackedDocuments documents{doc_start.data(), loss_mask.data()};
  auto variable = WholeChunk(config, kB, kLong, true);
  auto fixed = WholeChunk(config, kB, kShort, true);
  ASSERT_TRUE(variable->Forward(0, tokens.data(), nullptr, targets.data()).ok());  // length 8
  EXPECT_EQ(variable->length(0), kLong);
  variable->Release(0);
  ASSERT_TRUE(
      variable->Forward(1, tokens.data(), nullptr, targets.data(), &documents, kShort).ok());
  EXPECT_EQ(variable->length(1), kShort);
  ASSERT_TRUE(fixed->Forward(1, tokens.data(), nullptr, targets.data(), &documents).ok());
  EXPECT_EQ(variable->loss(1), fixed->loss(1));
  EXPECT_EQ(variable->aux_loss(1), fixed->aux_loss(1));
  ASSERT_TRUE(variable->Backward(1, nullptr).ok());
  ASSERT_TRUE(fixed->Backward(1, nullptr).ok());
  const auto got = Gradients(*variable), want = Gradients(*fixed);
  for (const auto& [name, g] : want) EXPECT_TRUE(got.at(name) == g) << name;
}

TEST(GptChunkTest, AShortMicrobatchEqualsAChunkBuiltForItsLengthBitwise) {
  CheckShortMicrobatchEqualsAChunkOfItsLength(SmallConfig(false));  // learned positions
  CheckShortMicrobatchEqualsAChunkOfItsLength(LlamaConfig());       // RoPE, GQA
  CheckShortMicrobatchEqualsAChunkOfItsLength(MixedConfig());       // every block kind
  CheckShortMicrobatchEqualsAChunkOfItsLength(MoeConfig(false));    // MoE: capacity of N = B x 3
}

// SetStepTokens: the microbatch weighs its tokens / the step's; twice its tokens halves every
// gradient exactly (a power of two) and its loss term is M x N / step tokens times its loss.
TEST(GptChunkTest, StepTokensWeighAMicrobatchByItsShareOfTheTokens) {
  const GptConfig config = SmallConfig(false);
  Batch batch = RandomBatch(config.vocab_size, 3);
  auto whole = WholeChunk(config, kB, kT, false), half = WholeChunk(config, kB, kT, false);
  ASSERT_TRUE(half->SetStepTokens(2 * kB * kT).ok());
  EXPECT_FALSE(half->SetStepTokens(-1).ok());
  for (auto* c : {whole.get(), half.get()}) {
    ASSERT_TRUE(c->Forward(0, batch.tokens.data(), nullptr, batch.targets.data()).ok());
  }
  EXPECT_EQ(whole->step_loss_term(0), whole->loss(0));
  EXPECT_EQ(half->step_loss_term(0), half->loss(0) * 0.5);
  for (auto* c : {whole.get(), half.get()}) ASSERT_TRUE(c->Backward(0, nullptr).ok());
  const auto full = Gradients(*whole), halved = Gradients(*half);
  for (const auto& [name, g] : full) {
    for (size_t i = 0; i < g.size(); ++i) ASSERT_EQ(halved.at(name)[i], g[i] * 0.5) << name;
  }
}

TEST(GptChunkTest, ALengthOutsideTheChunksSeqLenIsAnError) {
  auto chunk = WholeChunk(SmallConfig(false), kB, kT, false);
  Batch batch = RandomBatch(11, 1);
  for (int length : {-1, kT + 1}) {
    absl::Status s =
        chunk->Forward(0, batch.tokens.data(), nullptr, batch.targets.data(), nullptr, length);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << length;
    EXPECT_NE(s.message().find("must be in [1, seq_len]"), std::string::npos) << s;
  }
}

TEST(GptChunkTest, SeqLenLongerThanContextIsAnError) {
  auto chunk = GptChunk<float>::Create(SmallConfig(false), ChunkSpec{0, 3, true, true},
                                       ChunkOptions{2, 9, 1});
  EXPECT_EQ(chunk.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace stagehand::models
