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
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
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
#include "runtime/plan_validation.h"
#include "runtime/planner.h"
#include "runtime/schedule_table.h"
#include "runtime/table_planner.h"
#include "runtime/train/held_out_pass.h"
#include "runtime/trace/chrome_json.h"
#include "runtime/trace/recorder.h"
#include "runtime/train/training.h"
#include "tools/cluster/launcher.h"
#include "tools/planner_list.h"
#include "tools/train_flags.h"

ABSL_FLAG(bool, list_planners, false, "print the registered planners and exit");
ABSL_FLAG(std::string, dump_schedule, "", "write the validated plan to this CSV file");
ABSL_FLAG(bool, dry_run, false,
          "print the plan's unit-cost bubble and peak activations per stage, then exit");
ABSL_FLAG(double, link_latency_us, 0.0, "injected latency of every stage-to-stage transfer");
ABSL_FLAG(double, link_gbps, 0.0, "injected link bandwidth in Gbit/s (0 = unlimited)");
ABSL_FLAG(std::string, export, "",
          "at the end, write the weights to this file as Hugging Face GPT-2 safetensors");
ABSL_FLAG(std::string, init_from, "",
          "initial weights from a Hugging Face GPT-2 safetensors file (as --export writes)");

namespace stagehand {
namespace {

// The shared training configuration (tools/train_flags.h) and the launcher's own settings.
struct LaunchConfig : tools::TrainConfig {
  std::string dump_schedule;
  bool dry_run = false;
  actors::LinkModel link;
  std::string export_path;
  std::string init_from;
};

absl::StatusOr<LaunchConfig> ConfigFromFlags() {
  absl::StatusOr<tools::TrainConfig> train = tools::TrainConfigFromFlags();
  if (!train.ok()) return train.status();
  LaunchConfig c;
  static_cast<tools::TrainConfig&>(c) = std::move(*train);
  c.dump_schedule = absl::GetFlag(FLAGS_dump_schedule);
  c.dry_run = absl::GetFlag(FLAGS_dry_run);
  c.link.latency_us = absl::GetFlag(FLAGS_link_latency_us);
  c.link.gbps = absl::GetFlag(FLAGS_link_gbps);
  if (c.link.latency_us < 0 || c.link.gbps < 0) {
    return absl::InvalidArgumentError("--link_latency_us and --link_gbps must not be negative");
  }
  c.export_path = absl::GetFlag(FLAGS_export);
  c.init_from = absl::GetFlag(FLAGS_init_from);
  // Under `bazel run`, relative paths mean the directory bazel was run in.
  if (const char* cwd = std::getenv("BUILD_WORKING_DIRECTORY"); cwd != nullptr) {
    for (std::string* path : {&c.export_path, &c.init_from, &c.dump_schedule}) {
      if (!path->empty() && (*path)[0] != '/') *path = absl::StrCat(cwd, "/", *path);
    }
  }
  if (absl::Status s = tools::ValidateDryRunFlags(
          c.dry_run, {{"--save_params", c.save_params}, {"--export", c.export_path},
                      {"--trace", c.trace}, {"--checkpoint_dir", c.checkpoint_dir}});
      !s.ok()) {
    return s;
  }
  // Outputs written at the end of the run are checked now, so that no run ends unable to save.
  for (const auto& [flag, path] : {std::pair<const char*, const std::string&>{"--save_params", c.save_params},
                                   {"--export", c.export_path},
                                   {"--trace", c.trace}}) {
    if (absl::Status s = runtime::CheckOutputFile(flag, path); !s.ok()) return s;
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

using tools::RunHistory;
using tools::RunJson;

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
  if (absl::Status s = tools::CheckResumable(*info, c, model, "launch"); !s.ok()) return s;
  if (absl::Status s = runtime::RestoreCheckpoint(*info, chunks, /*with_optimizer=*/true); !s.ok()) return s;
  *history = tools::HistoryFromRunJson(info->meta.run, info->meta.step);
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

// The planner: a registered one by name, or a schedule table from a file (owned by
// `loaded`). Its plan is validated (each action once, dependency order, no deadlock, memory
// cap) before anything runs, and written out with --dump_schedule.
absl::StatusOr<const runtime::PlannerDefinition*> ResolvePlanner(
    const LaunchConfig& c, std::unique_ptr<runtime::PlannerDefinition>* loaded) {
  absl::StatusOr<const runtime::PlannerDefinition*> planner =
      runtime::PlannerRegistry::Default().Get(c.planner);
  if (!c.schedule.empty()) {
    absl::StatusOr<std::unique_ptr<runtime::PlannerDefinition>> table =
        runtime::LoadSchedulePlanner(c.schedule);
    if (!table.ok()) return table.status();
    *loaded = std::move(*table);
    planner = loaded->get();
  }
  if (!planner.ok()) return planner.status();
  absl::StatusOr<runtime::ScheduleTable> plan = runtime::ValidatePlanner(**planner, c.planner_options);
  if (!plan.ok()) return plan.status();
  if (std::optional<std::string> warning = runtime::BitwiseParityWarning(*plan)) {
    std::fprintf(stderr, "launch: warning: %s\n", warning->c_str());
  }
  if (!c.dump_schedule.empty()) {
    if (absl::Status s = runtime::SaveScheduleCsv(c.dump_schedule, *plan); !s.ok()) return s;
    std::printf("wrote the plan of %s to %s\n", (*planner)->name().c_str(), c.dump_schedule.c_str());
  }
  return planner;
}

absl::Status DryRun(const runtime::PlannerDefinition& planner, const LaunchConfig& c) {
  absl::StatusOr<runtime::DryRunReport> report = runtime::DryRun(planner, c.planner_options);
  if (!report.ok()) return report.status();
  std::printf("%s", runtime::FormatDryRun(*report).c_str());
  return absl::OkStatus();
}

// Cluster mode (--nprocs / --hostfile): refuses the flags the workers cannot honour, with
// the reason, instead of ignoring them; validates (and with --dry_run prints) the plan.
// Returns true when the cluster should start.
absl::StatusOr<bool> PrepareCluster(const LaunchConfig& c) {
  if (!c.export_path.empty() || !c.init_from.empty()) {
    return absl::InvalidArgumentError(
        "--export and --init_from are not supported with --nprocs/--hostfile (each worker holds only "
        "its stages): export from the cluster's checkpoint with a one-process `launch "
        "--checkpoint_dir=DIR --resume --export=FILE`, and import with a one-process run that "
        "writes a checkpoint, then resume the cluster from it");
  }
  if (c.link.latency_us != 0 || c.link.gbps != 0) {
    return absl::InvalidArgumentError(
        "--link_latency_us and --link_gbps model links inside one process; with --nprocs/--hostfile "
        "the real links are used: drop them");
  }
  if (c.eval_batches > runtime::kHeldOutMaxBatches) {
    return absl::InvalidArgumentError(absl::StrCat("--eval_batches=", c.eval_batches, ": a cluster evaluates at most ",
                                                   runtime::kHeldOutMaxBatches, " held-out batches"));
  }
  std::unique_ptr<runtime::PlannerDefinition> loaded;
  absl::StatusOr<const runtime::PlannerDefinition*> planner = ResolvePlanner(c, &loaded);
  if (!planner.ok()) return planner.status();
  if (c.dry_run) {
    if (absl::Status s = DryRun(**planner, c); !s.ok()) return s;
    return false;
  }
  return true;
}

absl::Status Run(const LaunchConfig& c) {
  std::unique_ptr<runtime::PlannerDefinition> loaded;
  absl::StatusOr<const runtime::PlannerDefinition*> planner = ResolvePlanner(c, &loaded);
  if (!planner.ok()) return planner.status();
  if (c.dry_run) return DryRun(**planner, c);
  absl::StatusOr<std::unique_ptr<runtime::Tokenizer>> tokenizer = runtime::MakeTokenizer(c.tokenizer);
  if (!tokenizer.ok()) return tokenizer.status();
  absl::StatusOr<runtime::Dataset> dataset = runtime::LoadDataset(c.dataset, **tokenizer);
  if (!dataset.ok()) return dataset.status();
  runtime::WindowSampler train =
      runtime::MakeSampler(dataset->train, c.chunk.micro_batch_size, c.chunk.seq_len,
                           c.planner_options.num_microbatches, c.model.seed);
  runtime::WindowSampler held_out = runtime::MakeHeldOutSampler(
      dataset->validation, c.chunk.micro_batch_size, c.chunk.seq_len, c.model.seed);
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
    std::printf("%s", stagehand::tools::PlannerListText(
                          stagehand::runtime::PlannerRegistry::Default()).c_str());
    return 0;
  }
  absl::StatusOr<stagehand::LaunchConfig> config = stagehand::ConfigFromFlags();
  if (!config.ok()) {
    std::fprintf(stderr, "launch: error: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  // --nprocs / --hostfile: one tools/worker process per rank (tools/cluster/launcher.h).
  if (stagehand::tools::ClusterRequested()) {
    absl::StatusOr<bool> start = stagehand::PrepareCluster(*config);
    if (!start.ok()) {
      std::fprintf(stderr, "launch: error: %s\n", std::string(start.status().message()).c_str());
      return 2;
    }
    std::fflush(stdout);
    return *start ? stagehand::tools::LaunchClusterFromFlags(argv[0], *config) : 0;
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
