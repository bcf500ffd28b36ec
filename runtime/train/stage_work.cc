// ModelStageWork (the GPT chunks of one stage) and SyntheticStageWork (fixed durations).
#include "runtime/train/stage_work.h"

#include <chrono>
#include <cmath>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"

namespace stagehand::runtime {

ModelStageWork::ModelStageWork(std::map<int, Chunk*> chunks, int num_chunks,
                               const WindowSampler* sampler, int num_microbatches,
                               OptimizerConfig optimizer)
    : chunks_(std::move(chunks)),
      num_chunks_(num_chunks),
      sampler_(sampler),
      num_microbatches_(num_microbatches),
      optimizer_(optimizer) {
  if (optimizer_.states != nullptr && static_cast<int>(optimizer_.states->size()) < num_chunks) {
    optimizer_.states->resize(num_chunks);
  }
}

absl::StatusOr<Chunk*> ModelStageWork::Get(int chunk) const {
  auto it = chunks_.find(chunk);
  if (it == chunks_.end()) {
    return absl::InvalidArgumentError(absl::StrCat("chunk ", chunk, " is not held by this stage"));
  }
  return it->second;
}

absl::Status ModelStageWork::Forward(int chunk, int mb, const Payload* input, Payload* output,
                                     double* loss) {
  absl::StatusOr<Chunk*> c = Get(chunk);
  if (!c.ok()) return c.status();
  const models::ChunkOptions& o = (*c)->options();
  const int64_t N = int64_t{o.micro_batch_size} * o.seq_len, C = (*c)->config().d_model;
  std::vector<int32_t> tokens(N), targets(N);
  sampler_->Sample(step_, mb, tokens.data(), targets.data());
  if (input != nullptr && static_cast<int64_t>(input->size()) != N * C) {
    return absl::InvalidArgumentError(absl::StrCat("F c", chunk, " mb", mb, ": activation has ",
                                                   input->size(), " floats, expected ", N * C));
  }
  if (absl::Status s = (*c)->Forward(mb, tokens.data(), input ? input->data() : nullptr,
                                     targets.data());
      !s.ok()) {
    return s;
  }
  if ((*c)->spec().has_head) {
    *loss = (*c)->loss(mb);
  } else {
    const float* out = (*c)->output(mb);
    output->assign(out, out + N * C);
  }
  return absl::OkStatus();
}

absl::Status ModelStageWork::BackwardInput(int chunk, int mb, const Payload* grad,
                                           Payload* input_grad) {
  absl::StatusOr<Chunk*> c = Get(chunk);
  if (!c.ok()) return c.status();
  if (absl::Status s = (*c)->BackwardInput(mb, grad ? grad->data() : nullptr); !s.ok()) return s;
  if (!(*c)->spec().has_embedding) {
    const models::ChunkOptions& o = (*c)->options();
    const int64_t n = int64_t{o.micro_batch_size} * o.seq_len * (*c)->config().d_model;
    const float* g = (*c)->input_grad(mb);
    input_grad->assign(g, g + n);
  }
  return absl::OkStatus();
}

absl::Status ModelStageWork::BackwardWeights(int chunk, int mb) {
  absl::StatusOr<Chunk*> c = Get(chunk);
  if (!c.ok()) return c.status();
  return (*c)->BackwardWeights(mb);
}

absl::Status ModelStageWork::Backward(int chunk, int mb, const Payload* grad, Payload* input_grad) {
  if (absl::Status s = BackwardInput(chunk, mb, grad, input_grad); !s.ok()) return s;
  return BackwardWeights(chunk, mb);
}

std::map<int, std::map<std::string, Payload>> ModelStageWork::TiedGradients() {
  std::map<int, std::map<std::string, Payload>> out;
  for (auto& [index, chunk] : chunks_) {
    chunk->FoldTiedGradients();
    // The embedding is tied to the head when they live in different chunks.
    if (num_chunks_ > 1 && chunk->params().contains("wte")) {
      const float* g = chunk->params().grad("wte");
      const int64_t n = int64_t{chunk->config().vocab_size} * chunk->config().d_model;
      out[index]["wte"] = Payload(g, g + n);
    }
  }
  return out;
}

void ModelStageWork::SetTiedGradients(const std::map<int, std::map<std::string, Payload>>& sums) {
  for (auto& [index, chunk] : chunks_) {
    auto it = sums.find(index);
    if (it == sums.end()) continue;
    for (const auto& [name, grad] : it->second) {
      std::memcpy(chunk->params().grad(name), grad.data(), grad.size() * sizeof(float));
    }
  }
}

std::map<int, std::vector<double>> ModelStageWork::SquaredNorms() {
  std::map<int, std::vector<double>> out;
  for (auto& [index, chunk] : chunks_) {
    std::vector<double>& v = out[index];
    for (const models::ParamInfo& info : chunk->params().infos()) {
      if (!info.tied_copy) v.push_back(ops::SumOfSquares(chunk->params().grads() + info.offset, info.size));
    }
  }
  return out;
}

void ModelStageWork::ApplyOptimizer(double clip_scale, int step) {
  for (auto& [index, chunk] : chunks_) {
    models::ParameterSet<float>& p = chunk->params();
    OptimizerState& st = optimizer_.states != nullptr ? (*optimizer_.states)[index] : states_[index];
    if (static_cast<int64_t>(st.m.size()) != p.size()) {
      st.m.assign(p.size(), 0.f);
      st.v.assign(p.size(), 0.f);
    }
    for (const models::ParamInfo& info : p.infos()) {
      ops::AdamWOptions options = optimizer_.adamw;
      options.learning_rate = LearningRateAt(optimizer_, step);
      if (!info.weight_decay) options.weight_decay = 0.0;
      ops::AdamWUpdate(p.values() + info.offset, p.grads() + info.offset, st.m.data() + info.offset,
                       st.v.data() + info.offset, info.size, options, step, clip_scale);
    }
    p.ZeroGrads();
  }
}

double ClipScaleFromSquaredNorms(const std::map<int, std::vector<double>>& norms,
                                 double grad_clip, double* global_norm) {
  double sum = 0.0;
  for (const auto& [chunk, values] : norms) {
    for (double v : values) sum += v;
  }
  *global_norm = std::sqrt(sum);
  return ops::ClipScale(*global_norm, grad_clip);
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

absl::Status SyntheticStageWork::BackwardInput(int chunk, int, const Payload*, Payload* input_grad) {
  SleepMicros(d_.backward_input_us);
  if (chunk > 0) input_grad->assign(d_.payload_floats, 1.0f);
  return absl::OkStatus();
}

absl::Status SyntheticStageWork::BackwardWeights(int, int) {
  SleepMicros(d_.backward_weight_us);
  return absl::OkStatus();
}

absl::Status SyntheticStageWork::Backward(int chunk, int mb, const Payload* grad, Payload* input_grad) {
  if (absl::Status s = BackwardInput(chunk, mb, grad, input_grad); !s.ok()) return s;
  return BackwardWeights(chunk, mb);
}

}  // namespace stagehand::runtime
