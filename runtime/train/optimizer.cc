// The optimizer step's pieces: tied-gradient sum, norms, clip scale, AdamW per chunk.
// Not the order of the phases across stages: training.cc and the step driver own that.
#include "runtime/train/optimizer.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace stagehand::runtime {
namespace {

// The embedding is the one tensor tied across chunks (to the head in the last chunk).
constexpr char kTiedAcrossChunks[] = "wte";

const models::ParamInfo* FindInfo(const models::ParameterSet<float>& params,
                                  const std::string& name) {
  for (const models::ParamInfo& info : params.infos()) {
    if (info.name == name) return &info;
  }
  return nullptr;
}

}  // namespace

double LearningRateAt(const OptimizerConfig& config, int64_t step) {
  const double peak = config.adamw.learning_rate;
  const LearningRateSchedule& s = config.schedule;
  if (s.warmup_steps > 0 && step <= s.warmup_steps)
    return peak * double(step) / double(s.warmup_steps);
  if (s.total_steps <= s.warmup_steps) return peak;
  const double progress =
      std::min(1.0, double(step - s.warmup_steps) / double(s.total_steps - s.warmup_steps));
  const double floor = peak * s.min_lr_fraction;
  return floor + 0.5 * (1.0 + std::cos(M_PI * progress)) * (peak - floor);
}

TiedGradientMap GatherTiedGradients(const std::map<int, Chunk*>& chunks, int num_chunks) {
  TiedGradientMap out;
  for (const auto& [index, chunk] : chunks) {
    chunk->FoldTiedGradients();
    // An untied head (its own lm_head.weight) shares nothing with the embedding.
    if (num_chunks <= 1 || !chunk->config().tied_head) continue;
    const models::ParamInfo* info = FindInfo(chunk->params(), kTiedAcrossChunks);
    if (info == nullptr) continue;
    const float* g = chunk->params().grads() + info->offset;
    out[index][info->name] = Payload(g, g + info->size);
  }
  return out;
}

std::map<std::string, Payload> SumTiedGradients(const std::vector<const TiedGradientMap*>& parts) {
  std::map<int, const std::map<std::string, Payload>*> by_chunk;
  for (const TiedGradientMap* part : parts) {
    for (const auto& [chunk, tensors] : *part) by_chunk[chunk] = &tensors;
  }
  std::map<std::string, Payload> sums;
  for (const auto& [chunk, tensors] : by_chunk) {
    for (const auto& [name, g] : *tensors) {
      auto [it, first] = sums.try_emplace(name, g);
      if (first) continue;
      Payload& sum = it->second;
      for (size_t i = 0; i < g.size(); ++i) sum[i] += g[i];
    }
  }
  return sums;
}

TiedGradientMap SumsForHolders(const TiedGradientMap& holders,
                               const std::map<std::string, Payload>& sums) {
  TiedGradientMap out;
  for (const auto& [chunk, tensors] : holders) {
    for (const auto& entry : tensors) out[chunk][entry.first] = sums.at(entry.first);
  }
  return out;
}

void ScatterTiedGradients(const std::map<int, Chunk*>& chunks, const TiedGradientMap& sums) {
  for (const auto& [index, chunk] : chunks) {
    auto it = sums.find(index);
    if (it == sums.end()) continue;
    for (const auto& [name, sum] : it->second) {
      std::memcpy(chunk->params().grad(name), sum.data(), sum.size() * sizeof(float));
    }
  }
}

std::map<int, std::vector<double>> SquaredGradientNorms(const std::map<int, Chunk*>& chunks) {
  std::map<int, std::vector<double>> out;
  for (const auto& [index, chunk] : chunks) {
    std::vector<double>& v = out[index];
    for (const models::ParamInfo& info : chunk->params().infos()) {
      if (!info.tied_copy) {
        v.push_back(ops::SumOfSquares(chunk->params().grads() + info.offset, info.size));
      }
    }
  }
  return out;
}

double ClipScaleFromSquaredNorms(const std::map<int, std::vector<double>>& norms, double grad_clip,
                                 double* global_norm) {
  double sum = 0.0;
  for (const auto& [chunk, values] : norms) {
    for (double v : values) sum += v;
  }
  *global_norm = std::sqrt(sum);
  return ops::ClipScale(*global_norm, grad_clip);
}

void ApplyAdamW(models::ParameterSet<float>& params, OptimizerState& state,
                const OptimizerConfig& config, int step, double clip_scale) {
  if (static_cast<int64_t>(state.m.size()) != params.size()) {
    state.m.assign(params.size(), 0.f);
    state.v.assign(params.size(), 0.f);
  }
  ops::AdamWOptions options = config.adamw;
  options.learning_rate = LearningRateAt(config, step);
  for (const models::ParamInfo& info : params.infos()) {
    ops::AdamWOptions tensor_options = options;
    if (!info.weight_decay) tensor_options.weight_decay = 0.0;
    ops::AdamWUpdate(params.values() + info.offset, params.grads() + info.offset,
                     state.m.data() + info.offset, state.v.data() + info.offset, info.size,
                     tensor_options, step, clip_scale);
  }
  params.ZeroGrads();
}

}  // namespace stagehand::runtime
