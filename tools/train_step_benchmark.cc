// tools/train_step_benchmark: tokens/s of one whole GPT-2 124M training step (forward,
// backward, AdamW) in float32 on random tokens, the figure compared with PyTorch by
// tools/bench_vs_pytorch.sh. Not a training run: the loss is printed only as a sanity check.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "models/gpt_config.h"
#include "runtime/data/text_corpus.h"
#include "runtime/train/training.h"

ABSL_FLAG(int, seq_len, 64, "tokens per sequence (T)");
ABSL_FLAG(int, micro_batch_size, 4, "sequences per step (B)");
ABSL_FLAG(int, timed_steps, 3, "timed steps after one warm-up step; the median is reported");
ABSL_FLAG(uint64_t, seed, 1337, "seed for initialisation and the random tokens");

namespace stagehand {
namespace {

// Letters: B sequences per step, T sequence length, V vocabulary.
struct BenchmarkConfig {
  models::GptConfig model;
  models::ChunkOptions chunk;
  runtime::OptimizerConfig optimizer;
  int timed_steps = 3;
};

absl::StatusOr<BenchmarkConfig> ConfigFromFlags() {
  BenchmarkConfig c;
  c.model = models::Gpt2Small(absl::GetFlag(FLAGS_seed));
  c.chunk.micro_batch_size = absl::GetFlag(FLAGS_micro_batch_size);
  c.chunk.seq_len = absl::GetFlag(FLAGS_seq_len);
  c.chunk.num_microbatches = 1;
  c.optimizer.adamw.learning_rate = 6e-4;
  c.optimizer.adamw.beta1 = 0.9;
  c.optimizer.adamw.beta2 = 0.95;
  c.optimizer.adamw.epsilon = 1e-8;
  c.optimizer.adamw.weight_decay = 0.1;
  c.optimizer.grad_clip = 1.0;
  c.timed_steps = absl::GetFlag(FLAGS_timed_steps);
  if (c.timed_steps <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--timed_steps=", c.timed_steps, " must be positive"));
  }
  if (c.chunk.micro_batch_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--micro_batch_size=", c.chunk.micro_batch_size, " must be positive"));
  }
  if (c.chunk.seq_len <= 0 || c.chunk.seq_len > c.model.max_seq_len) {
    return absl::InvalidArgumentError(
        absl::StrCat("--seq_len=", c.chunk.seq_len, " must be in [1, ", c.model.max_seq_len, "]"));
  }
  return c;
}

absl::Status Run(const BenchmarkConfig& c) {
  const int B = c.chunk.micro_batch_size, T = c.chunk.seq_len, V = c.model.vocab_size;
  // Random tokens in [0, V): enough for every step to draw its own windows.
  std::vector<int32_t> tokens(static_cast<size_t>(B) * T * (c.timed_steps + 1) * 4 + T + 1);
  std::mt19937_64 rng(c.model.seed);
  std::uniform_int_distribution<int32_t> token(0, V - 1);
  for (int32_t& t : tokens) t = token(rng);
  runtime::WindowSampler sampler(&tokens, B, T, c.model.seed);

  absl::StatusOr<std::vector<std::unique_ptr<runtime::Chunk>>> owned =
      runtime::BuildChunks(c.model, /*num_chunks=*/1, c.chunk);
  if (!owned.ok()) return owned.status();
  std::vector<runtime::Chunk*> chunks;
  for (auto& chunk : *owned) chunks.push_back(chunk.get());
  std::vector<runtime::OptimizerState> states;

  // Step 1 is the warm-up (allocations, first touch of the AdamW moments); the rest are timed.
  std::vector<double> seconds;
  double loss = 0.0;
  for (int step = 1; step <= c.timed_steps + 1; ++step) {
    const auto start = std::chrono::steady_clock::now();
    absl::StatusOr<double> step_loss = runtime::SequentialForwardBackward(chunks, sampler, step, 1);
    if (!step_loss.ok()) return step_loss.status();
    runtime::OptimizerStep(chunks, states, c.optimizer, step);
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    loss = *step_loss;
    std::fprintf(stderr, "step %d%s loss %.4f %.3f s\n", step, step == 1 ? " (warm-up)" : "", loss,
                 elapsed);
    if (step > 1) seconds.push_back(elapsed);
  }
  std::sort(seconds.begin(), seconds.end());
  const size_t k = seconds.size();
  const double median = k % 2 ? seconds[k / 2] : 0.5 * (seconds[k / 2 - 1] + seconds[k / 2]);
  std::printf("stagehand T=%d tokens/s %.1f\n", T, double(B) * T / median);
  return absl::OkStatus();
}

}  // namespace
}  // namespace stagehand

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Times GPT-2 124M training steps on random tokens. Example: train_step_benchmark "
      "--seq_len=64 --timed_steps=3");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::fprintf(stderr, "train_step_benchmark: error: unexpected argument '%s'\n", rest[1]);
    return 2;
  }
  absl::StatusOr<stagehand::BenchmarkConfig> config = stagehand::ConfigFromFlags();
  if (!config.ok()) {
    std::fprintf(stderr, "train_step_benchmark: error: %s\n",
                 std::string(config.status().message()).c_str());
    return 2;
  }
  absl::Status status = stagehand::Run(*config);
  if (!status.ok()) {
    std::fprintf(stderr, "train_step_benchmark: error: %s\n",
                 std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
