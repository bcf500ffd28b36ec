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
                               OptimizerConfig optimizer, DataParallelPlace place)
    : place_(place),
      chunks_(std::move(chunks)),
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
  sampler_->Sample(step_, place_.replica * num_microbatches_ + mb, tokens.data(), targets.data());
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

TiedGradientMap ModelStageWork::TiedGradients() {
  return GatherTiedGradients(chunks_, num_chunks_);
}

void ModelStageWork::SetTiedGradients(const TiedGradientMap& sums) {
  ScatterTiedGradients(chunks_, sums);
}

std::map<int, std::vector<double>> ModelStageWork::SquaredNorms() {
  return SquaredGradientNorms(chunks_);
}

void ModelStageWork::ApplyOptimizer(double clip_scale, int step) {
  for (auto& [index, chunk] : chunks_) {
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
    return absl::InvalidArgumentError(absl::StrCat("REDUCE_GRAD c", bucket.chunk, " [",
                                                   bucket.begin, ", ", bucket.end, ") is outside its ",
                                                   (*c)->params().size(), " gradients"));
  }
  return place_.group->AllReduceSum(
      absl::MakeSpan((*c)->params().grads() + bucket.begin, bucket.end - bucket.begin));
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
