// tools/launch: the Stagehand training launcher. Parses flags into typed configs, loads the
// corpus, builds the model and runs the training steps, printing one line per step.
// Not a scheduler or a model: it wires runtime/ and actors/ together and reports.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "models/gpt_config.h"
#include "absl/strings/str_join.h"
#include "actors/model_pipeline.h"
#include "runtime/data/text_corpus.h"
#include "runtime/io/safetensors.h"
#include "runtime/planner.h"
#include "runtime/train/training.h"
#include "tools/cluster/launcher.h"

ABSL_FLAG(int, steps, 300, "training steps");
ABSL_FLAG(int, layers, 4, "transformer layers");
ABSL_FLAG(int, d_model, 128, "model width (must be divisible by --heads)");
ABSL_FLAG(int, heads, 4, "attention heads");
ABSL_FLAG(int, seq_len, 64, "tokens per sequence (also the context length)");
ABSL_FLAG(int, micro_batch_size, 4, "sequences per microbatch");
ABSL_FLAG(int, microbatches, 8, "microbatches per step");
ABSL_FLAG(double, lr, 2e-3, "AdamW learning rate");
ABSL_FLAG(double, weight_decay, 0.0, "AdamW decoupled weight decay on matrices");
ABSL_FLAG(double, grad_clip, 1.0, "global gradient-norm clip (0 disables)");
ABSL_FLAG(uint64_t, seed, 1337, "seed for initialisation and data order");
ABSL_FLAG(std::string, data, stagehand::runtime::kDefaultCorpus,
          "text file or folder of text files (byte-level tokens)");
ABSL_FLAG(std::string, save_params, "", "write every parameter by name to this safetensors file");
ABSL_FLAG(int, stages, 4, "pipeline stages (one actor each, in this process)");
ABSL_FLAG(std::string, planner, "1f1b", "schedule planner by name (see --list_planners)");
ABSL_FLAG(bool, list_planners, false, "print the registered planners and exit");
ABSL_FLAG(int, max_inflight, 0,
          "most microbatch activations a stage may hold (0 = as many as the planner needs)");
ABSL_FLAG(double, link_latency_us, 0.0, "injected latency of every stage-to-stage transfer");
ABSL_FLAG(double, link_gbps, 0.0, "injected link bandwidth in Gbit/s (0 = unlimited)");
ABSL_FLAG(int, eval_batches, 16, "held-out batches for the validation loss at start and end");

namespace stagehand {
namespace {

struct LaunchConfig {
  std::string planner;
  runtime::PlannerOptions planner_options;
  actors::LinkModel link;
  models::GptConfig model;
  models::ChunkOptions chunk;
  runtime::OptimizerConfig optimizer;
  int steps = 0;
  int stages = 1;
  int eval_batches = 0;
  std::string data;
  std::string save_params;
};

absl::StatusOr<LaunchConfig> ConfigFromFlags() {
  LaunchConfig c;
  c.steps = absl::GetFlag(FLAGS_steps);
  c.stages = absl::GetFlag(FLAGS_stages);
  c.eval_batches = absl::GetFlag(FLAGS_eval_batches);
  c.data = absl::GetFlag(FLAGS_data);
  c.planner = absl::GetFlag(FLAGS_planner);
  c.planner_options.num_stages = c.stages;
  c.planner_options.num_microbatches = absl::GetFlag(FLAGS_microbatches);
  c.planner_options.max_inflight = absl::GetFlag(FLAGS_max_inflight);
  c.link.latency_us = absl::GetFlag(FLAGS_link_latency_us);
  c.link.gbps = absl::GetFlag(FLAGS_link_gbps);
  if (c.planner_options.max_inflight < 0 || c.link.latency_us < 0 || c.link.gbps < 0) {
    return absl::InvalidArgumentError("--max_inflight, --link_latency_us and --link_gbps must not be negative");
  }
  c.save_params = absl::GetFlag(FLAGS_save_params);
  c.model = models::UniformGpt(absl::GetFlag(FLAGS_layers), absl::GetFlag(FLAGS_d_model),
                               absl::GetFlag(FLAGS_heads), 256, absl::GetFlag(FLAGS_seq_len),
                               absl::GetFlag(FLAGS_seed));
  c.chunk.micro_batch_size = absl::GetFlag(FLAGS_micro_batch_size);
  c.chunk.seq_len = absl::GetFlag(FLAGS_seq_len);
  c.chunk.num_microbatches = absl::GetFlag(FLAGS_microbatches);
  c.optimizer.adamw.learning_rate = absl::GetFlag(FLAGS_lr);
  c.optimizer.adamw.weight_decay = absl::GetFlag(FLAGS_weight_decay);
  c.optimizer.grad_clip = absl::GetFlag(FLAGS_grad_clip);
  if (absl::GetFlag(FLAGS_layers) <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("--layers=", absl::GetFlag(FLAGS_layers), " must be positive"));
  }
  if (absl::Status s = models::ValidateGptConfig(c.model); !s.ok()) return s;
  auto positive = [](const char* name, double v) -> absl::Status {
    if (v > 0 && std::isfinite(v)) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat("--", name, "=", v, " must be positive"));
  };
  for (auto [name, v] : std::vector<std::pair<const char*, double>>{
           {"steps", double(c.steps)},
           {"micro_batch_size", double(c.chunk.micro_batch_size)},
           {"microbatches", double(c.chunk.num_microbatches)},
           {"lr", c.optimizer.adamw.learning_rate},
           {"stages", double(c.stages)},
           {"eval_batches", double(c.eval_batches)}}) {
    if (absl::Status s = positive(name, v); !s.ok()) return s;
  }
  if (c.optimizer.adamw.weight_decay < 0) {
    return absl::InvalidArgumentError("--weight_decay must not be negative");
  }
  return c;
}

void PrintProgressBar(int step, int steps, double loss) {
  const int width = 30, filled = width * step / steps;
  std::string bar(filled, '#');
  bar.resize(width, '.');
  std::fprintf(stderr, "\r[%s] %d/%d loss %.4f", bar.c_str(), step, steps, loss);
  if (step == steps) std::fprintf(stderr, "\n");
  std::fflush(stderr);
}

absl::Status Run(const LaunchConfig& c) {
  absl::StatusOr<const runtime::PlannerDefinition*> planner =
      runtime::PlannerRegistry::Default().Get(c.planner);
  if (!planner.ok()) return planner.status();
  absl::StatusOr<runtime::Corpus> corpus =
      runtime::LoadByteCorpus(c.data, /*validation_fraction=*/0.1, c.chunk.seq_len + 1);
  if (!corpus.ok()) return corpus.status();
  runtime::WindowSampler train(&corpus->train, c.chunk.micro_batch_size, c.chunk.seq_len,
                               c.model.seed);
  runtime::WindowSampler held_out(&corpus->validation, c.chunk.micro_batch_size, c.chunk.seq_len,
                                  c.model.seed ^ 0x5EEDull);
  actors::ModelPipelineOptions options;
  options.model = c.model;
  options.chunk = c.chunk;
  options.planner = *planner;
  options.planner_options = c.planner_options;
  options.optimizer = c.optimizer;
  options.link = c.link;
  absl::StatusOr<actors::ModelPipeline> mp = actors::BuildModelPipeline(options, &train);
  if (!mp.ok()) return mp.status();
  std::vector<runtime::Chunk*> chunks = mp->chunk_pointers();
  int64_t num_params = 0;
  for (runtime::Chunk* chunk : chunks) {
    for (const auto& info : chunk->params().infos()) num_params += info.tied_copy ? 0 : info.size;
  }
  const runtime::StepSpec& spec = mp->pipeline->spec();
  std::printf("model: %zu layers, d_model %d, %d heads, %.2fM parameters; data: %s (%zu train / %zu held-out bytes)\n",
              c.model.layers.size(), c.model.d_model, c.model.num_heads, num_params / 1e6,
              c.data.c_str(), corpus->train.size(), corpus->validation.size());
  std::printf("pipeline: %d stages, %d chunks, %d microbatches of %d x %d tokens, planner %s\n",
              spec.num_stages, spec.num_chunks, spec.num_microbatches, c.chunk.micro_batch_size,
              c.chunk.seq_len, c.planner.c_str());
  absl::StatusOr<double> val0 = runtime::Evaluate(chunks, held_out, c.eval_batches);
  if (!val0.ok()) return val0.status();
  std::printf("held-out loss before training %.4f\n", *val0);
  const bool tty = isatty(fileno(stderr));
  const double tokens_per_step =
      double(c.chunk.micro_batch_size) * c.chunk.seq_len * spec.num_microbatches;
  double total_seconds = 0;
  std::vector<double> busy(spec.num_stages, 0.0);
  for (int step = 1; step <= c.steps; ++step) {
    absl::StatusOr<actors::StepOutcome> outcome = mp->pipeline->RunStep(step);
    if (!outcome.ok()) return outcome.status();
    total_seconds += outcome->seconds;
    for (int s = 0; s < spec.num_stages; ++s) busy[s] += outcome->busy_seconds[s];
    std::printf("step %d loss %.4f tokens/s %.0f\n", step, outcome->loss,
                tokens_per_step / outcome->seconds);
    std::fflush(stdout);
    if (tty) PrintProgressBar(step, c.steps, outcome->loss);
  }
  absl::StatusOr<double> val = runtime::Evaluate(chunks, held_out, c.eval_batches);
  if (!val.ok()) return val.status();
  std::printf("held-out loss after %d steps %.4f (from %.4f)\n", c.steps, *val, *val0);
  std::vector<std::string> fractions;
  for (int s = 0; s < spec.num_stages; ++s) {
    fractions.push_back(absl::StrFormat("s%d %.2f", s, busy[s] / total_seconds));
  }
  std::printf("summary: step time %.1f ms, tokens/s %.0f, busy %s\n", 1e3 * total_seconds / c.steps,
              tokens_per_step * c.steps / total_seconds, absl::StrJoin(fractions, " ").c_str());
  if (!c.save_params.empty()) {
    if (absl::Status s = runtime::WriteSafetensors(c.save_params, runtime::CollectParameters(chunks));
        !s.ok()) {
      return s;
    }
    std::printf("saved parameters to %s\n", c.save_params.c_str());
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace stagehand

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Trains a GPT with Stagehand. Example: launch --steps=300");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::fprintf(stderr, "launch: error: unexpected argument '%s' (flags are --name=value)\n", rest[1]);
    return 2;
  }
  if (absl::GetFlag(FLAGS_list_planners)) {
    const auto& registry = stagehand::runtime::PlannerRegistry::Default();
    for (const std::string& name : registry.Names()) {
      std::printf("%-12s %s\n", name.c_str(), registry.Find(name)->description().c_str());
    }
    return 0;
  }
  // --nprocs / --hostfile: one tools/worker process per rank (tools/cluster/launcher.h).
  if (stagehand::tools::ClusterRequested()) return stagehand::tools::LaunchClusterFromFlags(argv[0]);
  absl::StatusOr<stagehand::LaunchConfig> config = stagehand::ConfigFromFlags();
  if (!config.ok()) {
    std::fprintf(stderr, "launch: error: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  absl::Status status = stagehand::Run(*config);
  if (!status.ok()) {
    std::fprintf(stderr, "launch: error: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
