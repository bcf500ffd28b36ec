// tools/generate: samples text from a checkpoint written by tools/launch (temperature,
// top-k, seed), streaming each token as it is drawn. Not a server or a batched decoder: one
// sequence, the full context recomputed per token (no KV cache), on the CPU.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "runtime/checkpoint/checkpoint.h"
#include "runtime/data/tokenizer.h"
#include "runtime/io/user_path.h"
#include "runtime/train/training.h"

ABSL_FLAG(std::string, checkpoint, "",
          "a --checkpoint_dir of tools/launch (its newest valid checkpoint) or one step_N folder");
ABSL_FLAG(std::string, prompt, "",
          "text to continue (empty: start from the end-of-text token or a newline)");
ABSL_FLAG(int, max_new_tokens, 200, "tokens to sample");
ABSL_FLAG(double, temperature, 0.8, "softmax temperature (0: always the most likely token)");
ABSL_FLAG(int, top_k, 40, "sample among the k most likely tokens (0: all)");
ABSL_FLAG(uint64_t, seed, 1, "sampling seed");
ABSL_FLAG(std::string, tokenizer_dir, "",
          "override the GPT-2 vocabulary folder the checkpoint names");

namespace stagehand {
namespace {

struct SamplingOptions {
  int max_new_tokens = 200;
  double temperature = 0.8;
  int top_k = 40;
  uint64_t seed = 1;
};

// Index drawn from probabilities p (V) after temperature and top-k; u uniform in [0, 1).
int32_t SampleToken(const float* p, int V, const SamplingOptions& o, double u) {
  std::vector<std::pair<double, int32_t>> candidates;
  for (int32_t v = 0; v < V; ++v) candidates.emplace_back(p[v], v);
  std::sort(candidates.begin(), candidates.end(), [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  if (o.temperature <= 0) return candidates.front().second;
  if (o.top_k > 0 && o.top_k < V) candidates.resize(o.top_k);
  // softmax(log p / temperature) = p^(1/temperature), renormalised; relative to the largest.
  double total = 0;
  for (auto& [weight, id] : candidates) {
    weight = weight > 0
                 ? std::exp((std::log(weight) - std::log(candidates.front().first)) / o.temperature)
                 : 0.0;
    total += weight;
  }
  double target = u * total;
  for (const auto& [weight, id] : candidates) {
    if ((target -= weight) < 0) return id;
  }
  return candidates.front().second;
}

absl::StatusOr<runtime::CheckpointInfo> OpenCheckpoint(const std::string& path) {
  if (std::filesystem::exists(path + "/manifest.json")) return runtime::VerifyCheckpoint(path);
  std::vector<std::string> skipped;
  absl::StatusOr<runtime::CheckpointInfo> info = runtime::FindLatestCheckpoint(path, &skipped);
  for (const std::string& s : skipped)
    std::fprintf(stderr, "generate: warning: skipping checkpoint %s\n", s.c_str());
  return info;
}

absl::Status Generate(const std::string& checkpoint, const std::string& prompt,
                      std::string tokenizer_dir, const SamplingOptions& o) {
  absl::StatusOr<runtime::CheckpointInfo> info = OpenCheckpoint(checkpoint);
  if (!info.ok()) return info.status();
  runtime::TokenizerOptions tokenizer_options = info->meta.tokenizer;
  if (!tokenizer_dir.empty()) tokenizer_options.gpt2_dir = tokenizer_dir;
  absl::StatusOr<std::unique_ptr<runtime::Tokenizer>> tokenizer =
      runtime::MakeTokenizer(tokenizer_options);
  if (!tokenizer.ok()) return tokenizer.status();
  const models::GptConfig& model = info->meta.model;
  if ((*tokenizer)->vocab_size() != model.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("the tokenizer has ", (*tokenizer)->vocab_size(),
                                                   " tokens but the model was trained with ",
                                                   model.vocab_size));
  }
  const int T = model.max_seq_len, V = model.vocab_size;
  absl::StatusOr<std::vector<std::unique_ptr<runtime::Chunk>>> chunks =
      runtime::BuildChunks(model, 1, models::ChunkOptions{1, T, 1});
  if (!chunks.ok()) return chunks.status();
  runtime::Chunk* chunk = (*chunks)[0].get();
  if (absl::Status s =
          runtime::RestoreCheckpoint(*info, {{chunk, nullptr, 0}}, /*with_optimizer=*/false);
      !s.ok()) {
    return s;
  }
  std::fprintf(stderr, "generate: %s (step %lld), %zu layers, d_model %d, context %d, %s tokens\n",
               info->dir.c_str(), static_cast<long long>(info->meta.step), model.layers.size(),
               model.d_model, T, (*tokenizer)->name().c_str());
  std::vector<int32_t> ids = (*tokenizer)->Encode(prompt);
  if (ids.empty())
    ids = (*tokenizer)->end_of_text() >= 0 ? std::vector<int32_t>{(*tokenizer)->end_of_text()}
                                           : (*tokenizer)->Encode("\n");
  std::fwrite(prompt.data(), 1, prompt.size(), stdout);
  std::mt19937_64 rng(o.seed);
  std::vector<int32_t> tokens(T, 0), targets(T, 0);
  for (int i = 0; i < o.max_new_tokens; ++i) {
    // The last T tokens; positions after the context are padding that causal attention ignores.
    const int n = std::min<int>(T, ids.size());
    std::copy(ids.end() - n, ids.end(), tokens.begin());
    if (absl::Status s = chunk->Forward(0, tokens.data(), nullptr, targets.data()); !s.ok())
      return s;
    const double u = double(rng() >> 11) * 0x1.0p-53;
    const int32_t next = SampleToken(chunk->probabilities(0) + int64_t{n - 1} * V, V, o, u);
    chunk->Release(0);
    if (next == (*tokenizer)->end_of_text()) break;
    ids.push_back(next);
    absl::StatusOr<std::string> text = (*tokenizer)->Decode({next});
    if (!text.ok()) return text.status();
    std::fwrite(text->data(), 1, text->size(), stdout);
    std::fflush(stdout);
  }
  std::printf("\n");
  return absl::OkStatus();
}

}  // namespace
}  // namespace stagehand

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Samples text from a Stagehand checkpoint. Example: generate --checkpoint=/tmp/run "
      "--prompt='Q: '");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::fprintf(stderr, "generate: error: unexpected argument '%s' (flags are --name=value)\n",
                 rest[1]);
    return 2;
  }
  std::string checkpoint = absl::GetFlag(FLAGS_checkpoint),
              tokenizer_dir = absl::GetFlag(FLAGS_tokenizer_dir);
  if (checkpoint.empty()) {
    std::fprintf(stderr, "generate: error: --checkpoint is required (a launch --checkpoint_dir)\n");
    return 2;
  }
  // Under `bazel run`, relative paths mean the directory bazel was run in.
  for (std::string* path : {&checkpoint, &tokenizer_dir})
    *path = stagehand::runtime::ResolveUserPath(*path);
  stagehand::SamplingOptions o;
  o.max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
  o.temperature = absl::GetFlag(FLAGS_temperature);
  o.top_k = absl::GetFlag(FLAGS_top_k);
  o.seed = absl::GetFlag(FLAGS_seed);
  if (o.max_new_tokens < 0 || o.top_k < 0 || !(o.temperature >= 0)) {
    std::fprintf(
        stderr,
        "generate: error: --max_new_tokens, --top_k and --temperature must not be negative\n");
    return 2;
  }
  absl::Status status =
      stagehand::Generate(checkpoint, absl::GetFlag(FLAGS_prompt), tokenizer_dir, o);
  if (!status.ok()) {
    std::fprintf(stderr, "generate: error: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
