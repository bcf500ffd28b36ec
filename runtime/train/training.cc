// Training-step building blocks shared by the sequential and pipelined runs.
#include "runtime/train/training.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "models/partition.h"
#include "runtime/train/profile_partition.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {

absl::StatusOr<std::vector<models::ChunkSpec>> CutModel(const models::GptConfig& config,
                                                        int num_chunks,
                                                        const std::string& partition, int seq_len) {
  if (partition.empty())
    return models::CutLayers(static_cast<int>(config.layers.size()), num_chunks);
  if (IsProfilePartition(partition)) {
    absl::StatusOr<ProfileCut> cut = ProfilePartition(partition, config, num_chunks, seq_len);
    if (!cut.ok()) return cut.status();
    return models::CutLayersAs(static_cast<int>(config.layers.size()), cut->layers_per_chunk);
  }
  absl::StatusOr<std::vector<int>> sizes =
      models::ResolvePartition(partition, config, num_chunks, seq_len);
  if (!sizes.ok()) return sizes.status();
  return models::CutLayersAs(static_cast<int>(config.layers.size()), *sizes);
}

absl::StatusOr<std::vector<std::unique_ptr<Chunk>>> BuildChunks(const models::GptConfig& config,
                                                                int num_chunks,
                                                                const models::ChunkOptions& options,
                                                                const std::string& partition) {
  if (absl::Status s = models::ValidateGptConfig(config); !s.ok()) return s;
  absl::StatusOr<std::vector<models::ChunkSpec>> specs =
      CutModel(config, num_chunks, partition, options.seq_len);
  if (!specs.ok()) return specs.status();
  std::vector<std::unique_ptr<Chunk>> chunks;
  for (const models::ChunkSpec& spec : *specs) {
    absl::StatusOr<std::unique_ptr<Chunk>> chunk = Chunk::Create(config, spec, options);
    if (!chunk.ok()) return chunk.status();
    chunks.push_back(std::move(*chunk));
  }
  return chunks;
}

double OptimizerStep(const std::vector<Chunk*>& chunks, std::vector<OptimizerState>& states,
                     const OptimizerConfig& config, int step) {
  std::map<int, Chunk*> all;
  for (size_t k = 0; k < chunks.size(); ++k) all[static_cast<int>(k)] = chunks[k];
  // 1. Tied copies: every holder gets the same sum, so the same update.
  const TiedGradientMap tied = GatherTiedGradients(all, static_cast<int>(chunks.size()));
  ScatterTiedGradients(all, SumsForHolders(tied, SumTiedGradients({&tied})));
  // 2. Global norm, each tied weight once, in chunk and declaration order.
  double norm = 0.0;
  const double scale =
      ClipScaleFromSquaredNorms(SquaredGradientNorms(all), config.grad_clip, &norm);
  // 3. AdamW per chunk.
  states.resize(chunks.size());
  for (size_t k = 0; k < chunks.size(); ++k) {
    ApplyAdamW(chunks[k]->params(), states[k], config, step, scale);
  }
  return norm;
}

MicrobatchData::MicrobatchData(const models::ChunkOptions& options) {
  const int64_t N = int64_t{options.micro_batch_size} * options.seq_len;
  tokens_.resize(N), targets_.resize(N);
}

void MicrobatchData::Draw(const WindowSampler& sampler, int64_t step, int microbatch) {
  length_ = sampler.Length(step, microbatch);
  sampler.Sample(step, microbatch, tokens_.data(), targets_.data());
  packed_ = sampler.has_documents();
  if (!packed_) return;
  doc_start_.resize(tokens_.size()), loss_mask_.resize(tokens_.size());
  sampler.SampleDocuments(step, microbatch, doc_start_.data(), loss_mask_.data());
  documents_ = models::PackedDocuments{doc_start_.data(), loss_mask_.data()};
}

absl::StatusOr<double> SequentialForwardBackward(const std::vector<Chunk*>& chunks,
                                                 const WindowSampler& sampler, int64_t step,
                                                 int num_microbatches) {
  MicrobatchData data(chunks.front()->options());
  const int64_t step_tokens =
      sampler.variable_lengths() ? sampler.StepTokens(step, num_microbatches) : 0;
  for (Chunk* c : chunks) RETURN_IF_ERROR(c->SetStepTokens(step_tokens));
  double loss = 0.0;
  for (int mb = 0; mb < num_microbatches; ++mb) {
    data.Draw(sampler, step, mb);
    const float* x = nullptr;
    for (Chunk* c : chunks) {
      RETURN_IF_ERROR(
          c->Forward(mb, data.tokens(), x, data.targets(), data.documents(), data.length()));
      x = c->output(mb);
    }
    loss += chunks.back()->step_loss_term(mb);
    // B of chunk k copies dout (chunk k+1's input gradient), so W of chunk k+1, which
    // releases that gradient, runs after it.
    const float* dout = nullptr;
    for (int k = static_cast<int>(chunks.size()) - 1; k >= 0; --k) {
      if (absl::Status s = chunks[k]->BackwardInput(mb, dout); !s.ok()) return s;
      if (k + 1 < static_cast<int>(chunks.size())) {
        if (absl::Status s = chunks[k + 1]->BackwardWeights(mb); !s.ok()) return s;
      }
      dout = chunks[k]->input_grad(mb);
    }
    if (absl::Status s = chunks.front()->BackwardWeights(mb); !s.ok()) return s;
  }
  return loss / num_microbatches;
}

absl::StatusOr<double> Evaluate(const std::vector<Chunk*>& chunks, const WindowSampler& sampler,
                                int num_batches) {
  MicrobatchData data(chunks.front()->options());
  double loss = 0.0;
  constexpr int kEvalMicrobatch = -1;  // never used by training
  for (int b = 0; b < num_batches; ++b) {
    data.Draw(sampler, b, 0);
    const float* x = nullptr;
    for (Chunk* c : chunks) {
      if (absl::Status s = c->Forward(kEvalMicrobatch, data.tokens(), x, data.targets(),
                                      data.documents(), data.length());
          !s.ok()) {
        return s;
      }
      x = c->output(kEvalMicrobatch);
    }
    loss += chunks.back()->loss(kEvalMicrobatch);
    for (Chunk* c : chunks) c->Release(kEvalMicrobatch);
  }
  return loss / num_batches;
}

std::vector<NamedTensor> CollectParameters(const std::vector<Chunk*>& chunks) {
  std::vector<NamedTensor> out;
  for (Chunk* c : chunks) {
    for (const models::ParamInfo& info : c->params().infos()) {
      if (info.tied_copy) continue;
      const float* v = c->params().values() + info.offset;
      out.push_back(NamedTensor{info.name, info.shape, std::vector<float>(v, v + info.size)});
    }
  }
  return out;
}

absl::Status AssignParameters(const std::vector<Chunk*>& chunks,
                              const std::map<std::string, NamedTensor>& tensors) {
  absl::flat_hash_map<std::string, bool> used;
  for (Chunk* c : chunks) {
    for (const models::ParamInfo& info : c->params().infos()) {
      auto it = tensors.find(info.name);
      if (it == tensors.end()) {
        return absl::InvalidArgumentError(absl::StrCat("no tensor for parameter ", info.name));
      }
      if (it->second.shape != info.shape) {
        return absl::InvalidArgumentError(absl::StrCat(
            "tensor ", info.name, " has shape [", absl::StrJoin(it->second.shape, ", "),
            "] but the model's parameter has [", absl::StrJoin(info.shape, ", "), "]"));
      }
      std::copy(it->second.data.begin(), it->second.data.end(), c->params().values() + info.offset);
      used[info.name] = true;
    }
  }
  for (const auto& [name, tensor] : tensors) {
    if (!used.contains(name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor ", name, " matches no parameter of the model"));
    }
  }
  return absl::OkStatus();
}

}  // namespace stagehand::runtime
