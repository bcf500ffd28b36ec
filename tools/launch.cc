// tools/launch: the Stagehand training launcher. Parses flags into typed configs, loads the
// corpus, builds the model and runs the training steps, printing one line per step.
// Not a scheduler or a model: it wires runtime/ and actors/ together and reports.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "actors/model_pipeline.h"
#include "models/cuda/cuda_support.h"
#include "models/gpt_config.h"
#include "models/model_config.h"
#include "models/partition.h"
#include "ops/cuda/energy.h"
#include "runtime/checkpoint/checkpoint.h"
#include "runtime/checkpoint/hf_llama.h"
#include "runtime/cluster/fault_plan.h"
#include "runtime/cluster/placement.h"
#include "runtime/data/dataset.h"
#include "runtime/data/text_corpus.h"
#include "runtime/data/tokenizer.h"
#include "runtime/dry_run.h"
#include "runtime/grid/rank_grid.h"
#include "runtime/io/loss_curve.h"
#include "runtime/io/output_path.h"
#include "runtime/io/progress.h"
#include "runtime/io/safetensors.h"
#include "runtime/io/user_path.h"
#include "runtime/moe_stats.h"
#include "runtime/plan_validation.h"
#include "runtime/planner.h"
#include "runtime/schedule_table.h"
#include "runtime/sim/auto_planner.h"
#include "runtime/table_planner.h"
#include "runtime/trace/chrome_json.h"
#include "runtime/trace/recorder.h"
#include "runtime/trace/summary.h"
#include "runtime/train/held_out_pass.h"
#include "runtime/train/profile_partition.h"
#include "runtime/train/stage_work.h"
#include "runtime/train/timers.h"
#include "runtime/train/train_loop.h"
#include "runtime/train/training.h"
#include "runtime/util/cores.h"
#include "runtime/util/status_macros.h"
#include "tools/cluster/launcher.h"
#include "tools/planner_list.h"
#include "tools/train_flags.h"

#ifdef STAGEHAND_CUDA
#include "ops/cuda/cuda_status.h"
#include "ops/cuda/device.h"
#include "runtime/collectives/in_process_device_collective.h"
#include "runtime/train/cuda_stage_work.h"
#endif

ABSL_FLAG(bool, list_planners, false, "print the registered planners and exit");
ABSL_FLAG(double, auto_replan_drift, 0.2,
          "--planner=auto: re-rank the planners from the run's own trace after the first step, "
          "and again when a chunk's measured F/I/W time drifts by more than this fraction "
          "(0: keep the first pick)");
ABSL_FLAG(std::string, dump_schedule, "", "write the validated plan to this CSV file");
ABSL_FLAG(bool, dry_run, false,
          "print the plan's unit-cost bubble and peak activations per stage, then exit");
ABSL_FLAG(double, link_latency_us, 0.0,
          "injected latency of every stage-to-stage transfer and (--dp) every collective; "
          "with --nprocs / --hostfile, of every collective only");
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

// --device against the other flags, before anything is built (tools::ValidateDeviceFlags); then,
// in a launch built without --config=cuda, how to build one that has it.
absl::Status ValidateDevice(const LaunchConfig& c) {
  RETURN_IF_ERROR(tools::ValidateDeviceFlags(c));
  if (c.device == "cpu") return absl::OkStatus();
#ifndef STAGEHAND_CUDA
  return absl::FailedPreconditionError(
      "--device=cuda: this launch was built without CUDA; build and run it with "
      "./bazelw run --config=cuda //tools:launch -- --device=cuda");
#else
  return absl::OkStatus();
#endif
}

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
  RETURN_IF_ERROR(ValidateDevice(c));
  // Under `bazel run`, relative paths mean the directory bazel was run in.
  for (std::string* path : {&c.export_path, &c.init_from, &c.dump_schedule}) {
    *path = runtime::ResolveUserPath(*path);
  }
  if (absl::Status s =
          tools::ValidateDryRunFlags(c.dry_run, {{"--save_params", c.save_params},
                                                 {"--export", c.export_path},
                                                 {"--trace", c.trace},
                                                 {"--checkpoint_dir", c.checkpoint_dir}});
      !s.ok()) {
    return s;
  }
  // Outputs written at the end of the run are checked now, so that no run ends unable to save.
  for (const auto& [flag, path] :
       {std::pair<const char*, const std::string&>{"--save_params", c.save_params},
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
                               const std::vector<runtime::ChunkState>& chunks,
                               RunHistory* history) {
  std::vector<std::string> skipped;
  absl::StatusOr<runtime::CheckpointInfo> info =
      runtime::FindLatestCheckpoint(c.checkpoint_dir, &skipped);
  for (const std::string& s : skipped) {
    std::fprintf(stderr, "launch: warning: skipping checkpoint %s\n", s.c_str());
  }
  if (!info.ok()) {
    if (info.status().code() != absl::StatusCode::kNotFound || !skipped.empty())
      return info.status();
    std::printf("resume: no checkpoint in %s yet, starting at step 0\n", c.checkpoint_dir.c_str());
    return 0;
  }
  if (absl::Status s = tools::CheckResumable(*info, c, model, "launch"); !s.ok()) return s;
  if (absl::Status s = runtime::RestoreCheckpoint(*info, chunks, /*with_optimizer=*/true); !s.ok())
    return s;
  *history = tools::HistoryFromRunJson(info->meta.run, info->meta.step);
  std::printf("resumed from %s (step %lld)\n", info->dir.c_str(),
              static_cast<long long>(info->meta.step));
  return info->meta.step;
}

absl::Status SaveCheckpoint(const LaunchConfig& c, const models::GptConfig& model, int64_t step,
                            const RunHistory& history,
                            const std::vector<runtime::ChunkState>& chunks) {
  runtime::CheckpointMeta meta;
  meta.step = step;
  meta.model = model;
  meta.tokenizer = c.tokenizer;
  meta.run = RunJson(c, history);
  absl::StatusOr<std::string> dir =
      runtime::WriteCheckpoint(c.checkpoint_dir, meta, chunks, c.keep_checkpoints);
  if (!dir.ok()) return dir.status();
  std::printf("checkpoint: step %lld in %s\n", static_cast<long long>(step), dir->c_str());
  return absl::OkStatus();
}

// The planner: a registered one by name, or a schedule table from a file (owned by `loaded`).
absl::StatusOr<const runtime::PlannerDefinition*> GetPlanner(
    const LaunchConfig& c, std::unique_ptr<runtime::PlannerDefinition>* loaded) {
  if (c.schedule.empty()) return runtime::PlannerRegistry::Default().Get(c.planner);
  ASSIGN_OR_RETURN(*loaded, runtime::LoadSchedulePlanner(c.schedule));
  return loaded->get();
}

// The planner, its plan validated (each action once, dependency order, no deadlock, memory
// cap) before anything runs, and written out with --dump_schedule.
absl::StatusOr<const runtime::PlannerDefinition*> ResolvePlanner(
    const LaunchConfig& c, std::unique_ptr<runtime::PlannerDefinition>* loaded) {
  ASSIGN_OR_RETURN(const runtime::PlannerDefinition* planner, GetPlanner(c, loaded));
  ASSIGN_OR_RETURN(runtime::ScheduleTable plan,
                   runtime::ValidatePlanner(*planner, c.planner_options));
  if (std::optional<std::string> warning = runtime::BitwiseParityWarning(plan)) {
    std::fprintf(stderr, "launch: warning: %s\n", warning->c_str());
  }
  if (!c.dump_schedule.empty()) {
    RETURN_IF_ERROR(runtime::SaveScheduleCsv(c.dump_schedule, plan));
    std::printf("wrote the plan of %s to %s\n", planner->name().c_str(), c.dump_schedule.c_str());
  }
  return planner;
}

// --rampup_batch_size: the plan of every M the ramp-up reaches is validated before training
// (the full M's already was, by ResolvePlanner).
absl::Status ValidateRampupPlans(const LaunchConfig& c, const runtime::PlannerDefinition& planner) {
  if (!c.rampup.has_value()) return absl::OkStatus();
  ASSIGN_OR_RETURN(runtime::MicrobatchCalculator calc, tools::MicrobatchCalculatorOf(c));
  const std::vector<int> ms = calc.DistinctMicrobatches(c.steps);
  for (int m : ms) {
    runtime::PlannerOptions o = c.planner_options;
    o.num_microbatches = m;
    if (absl::Status s = runtime::ValidatePlanner(planner, o).status(); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--rampup_batch_size: the plan of ",
                                                     planner.name(), " for ", m,
                                                     " microbatches: ", s.message()));
    }
  }
  std::printf(
      "batch ramp-up: %lld to %lld sequences over %lld samples; plans validated for %s "
      "microbatches%s\n",
      static_cast<long long>(c.rampup->start),
      static_cast<long long>(calc.GlobalBatch(c.rampup->samples + 1)),
      static_cast<long long>(c.rampup->samples), absl::StrJoin(ms, ", ").c_str(),
      c.dp > 1 ? " per replica" : "");
  return absl::OkStatus();
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
  RETURN_IF_ERROR(actors::ValidateExpertParallelism(c.model, c.dp, c.ep));
  if ((c.link.latency_us != 0 || c.link.gbps != 0) && c.dp == 1) {
    return absl::InvalidArgumentError(
        "--link_latency_us and --link_gbps model the link of a cluster's collectives (the "
        "pipeline's transfers use the real links), and with --dp=1 there is none: drop them");
  }
  if (c.slow_stage.stage >= 0) {
    return absl::InvalidArgumentError(
        "--slow_stage stretches a stage inside one process; with --nprocs/--hostfile drop it");
  }
  if (c.eval_batches > runtime::kHeldOutMaxBatches) {
    return absl::InvalidArgumentError(
        absl::StrCat("--eval_batches=", c.eval_batches, ": a cluster evaluates at most ",
                     runtime::kHeldOutMaxBatches, " held-out batches"));
  }
  std::unique_ptr<runtime::PlannerDefinition> loaded;
  absl::StatusOr<const runtime::PlannerDefinition*> planner = ResolvePlanner(c, &loaded);
  if (!planner.ok()) return planner.status();
  RETURN_IF_ERROR(ValidateRampupPlans(c, **planner));
  if (c.dry_run) {
    if (absl::Status s = DryRun(**planner, c); !s.ok()) return s;
    return false;
  }
  return true;
}

// --export after a cluster run: every rank wrote its chunks' parameters to
// RankFile(part, rank); they are set on the whole model's chunks, cut as in one process,
// so that the file is byte for byte the one-process run's. The parts are removed after.
absl::Status ExportFromParts(const LaunchConfig& c, int nprocs, const std::string& part) {
  std::unique_ptr<runtime::PlannerDefinition> loaded;
  ASSIGN_OR_RETURN(const runtime::PlannerDefinition* planner, GetPlanner(c, &loaded));
  ASSIGN_OR_RETURN(runtime::StepSpec spec, planner->MakeSpec(c.planner_options));
  ASSIGN_OR_RETURN(std::unique_ptr<runtime::Tokenizer> tokenizer,
                   runtime::MakeTokenizer(c.tokenizer));
  ASSIGN_OR_RETURN(models::GptConfig model, tools::ModelForTokenizer(c, tokenizer->vocab_size()));
  std::map<std::string, runtime::NamedTensor> tensors;
  for (int r = 0; r < nprocs; ++r) {
    ASSIGN_OR_RETURN(auto rank_tensors, runtime::ReadSafetensors(runtime::RankFile(part, r)));
    tensors.merge(rank_tensors);
  }
  models::ChunkOptions chunk_options = c.chunk;
  chunk_options.num_microbatches = spec.num_microbatches;
  ASSIGN_OR_RETURN(std::vector<models::ChunkSpec> cuts,
                   runtime::CutModel(model, spec.num_chunks, c.partition, c.chunk.seq_len));
  std::vector<std::unique_ptr<runtime::Chunk>> chunks;
  std::vector<runtime::Chunk*> pointers;
  for (const models::ChunkSpec& cut : cuts) {
    ASSIGN_OR_RETURN(chunks.emplace_back(), runtime::Chunk::Create(model, cut, chunk_options));
    pointers.push_back(chunks.back().get());
  }
  RETURN_IF_ERROR(runtime::AssignParameters(pointers, tensors));
  RETURN_IF_ERROR(runtime::ExportHf(c.export_path, pointers, model));
  for (int r = 0; r < nprocs; ++r) unlink(runtime::RankFile(part, r).c_str());
  std::printf("exported Hugging Face %s weights to %s\n",
              runtime::UsesGpt2Names(model) ? "GPT-2" : "Llama", c.export_path.c_str());
  return absl::OkStatus();
}

// The rank grid of --dp (split into ep x edp with --ep) over `stages`, as the launcher prints it.
void PrintGrid(const LaunchConfig& c, int stages) {
  absl::StatusOr<runtime::RankGrid> grid = runtime::RankGrid::DataPipeline(c.dp, stages);
  if (grid.ok() && c.ep > 1) grid = grid->Split("dp", {{"ep", c.ep}, {"edp", c.dp / c.ep}});
  if (grid.ok()) std::printf("%s", grid->Describe().c_str());
}

// What each replica keeps and computes: --zero=1's share of the moments (with --ep, dense and
// expert elements apart) and --ep's share of the experts, in one process and in the cluster
// (`gloo`: its collectives are Gloo's).
void PrintReplicaSharding(const LaunchConfig& c, bool gloo) {
  if (c.zero == 1) {
    std::string kept = absl::StrFormat("1/%d of every chunk", c.dp);
    if (c.ep > 1) {
      kept = absl::StrFormat(
          "1/%d of every chunk's dense elements and %s", c.dp,
          c.dp / c.ep > 1
              ? absl::StrFormat("1/%d of its experts' (over the edp replicas holding them)",
                                c.dp / c.ep)
              : std::string("all of its experts' (no other replica holds them)"));
    }
    std::printf(
        "ZeRO-1: each replica keeps AdamW moments for %s; gradients reduce-scattered, parameters "
        "all-gathered%s\n",
        kept.c_str(), gloo ? " (over Gloo)" : "");
  }
  if (c.ep > 1) {
    std::printf(
        "expert parallel: groups of %d replicas (dp = ep %d x edp %d); each computes 1/%d of "
        "every MoE layer's experts, tokens dispatched and combined by %sall-to-all\n",
        c.ep, c.ep, c.dp / c.ep, c.ep, gloo ? "Gloo " : "");
  }
}

// --dp with --nprocs / --hostfile: the rank grid the workers will sit on (checked before any
// fork by ValidateProcessCount), as the one-process launch prints it.
void PrintClusterGrid(const LaunchConfig& c, int nprocs) {
  PrintGrid(c, c.stages);
  std::printf(
      "data parallel: %d replicas x %d microbatches = %d microbatches a step, on %d worker "
      "processes (one stage of one replica each); gradients summed in replica order over Gloo "
      "(TCP), buckets of %g MiB\n",
      c.dp, c.planner_options.num_microbatches, c.dp * c.planner_options.num_microbatches, nprocs,
      c.grad_bucket_mb);
  PrintReplicaSharding(c, /*gloo=*/true);
}

// --nprocs / --hostfile: one tools/worker process per rank (tools/cluster/launcher.h);
// --init_from goes to every worker, --export is written from the ranks' parts at the end.
int RunClusterLaunch(const char* argv0, const LaunchConfig& c) {
  absl::StatusOr<bool> start = PrepareCluster(c);
  absl::StatusOr<tools::ClusterLaunchOptions> o = tools::ClusterOptionsFromFlags(argv0, c);
  for (const absl::Status& s : {start.status(), o.status()}) {
    if (s.ok()) continue;
    std::fprintf(stderr, "launch: error: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  if (c.dp > 1) PrintClusterGrid(c, o->nprocs);
  std::fflush(stdout);
  if (!*start) return 0;
  const std::string part = c.export_path.empty() ? "" : c.export_path + ".part";
  if (!c.init_from.empty()) o->worker_args.push_back("--init_from=" + c.init_from);
  // --link_latency_us / --link_gbps: in a cluster they model the collectives' link only (the
  // pipeline's UCX transfers use the real one).
  if (c.link.latency_us != 0 || c.link.gbps != 0) {
    o->worker_args.push_back(absl::StrCat("--collective_latency_us=", c.link.latency_us));
    o->worker_args.push_back(absl::StrCat("--collective_gbps=", c.link.gbps));
  }
  if (!part.empty()) o->worker_args.push_back("--export_part=" + part);
  if (int code = tools::RunCluster(*o); code != 0 || part.empty()) return code;
  if (absl::Status s = ExportFromParts(c, o->nprocs, part); !s.ok()) {
    std::fprintf(stderr, "launch: error: --export: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}

// Everything one process trains with; built once, before the first step.
struct Session {
  std::unique_ptr<runtime::PlannerDefinition> loaded;  // a --schedule table
  const runtime::PlannerDefinition* planner = nullptr;
  std::unique_ptr<runtime::Tokenizer> tokenizer;
  runtime::Dataset dataset;
  std::unique_ptr<runtime::WindowSampler> train;
  std::unique_ptr<runtime::WindowSampler> held_out;
  models::GptConfig model;
  std::vector<runtime::OptimizerState> optimizer_states;    // AdamW moments, for checkpoints
  std::unique_ptr<runtime::trace::TraceRecorder> recorder;  // outlives the pipeline
  // --device=cuda: what the stage works share (CudaShared), which outlives the pipeline; held
  // as void so that the CPU build needs no CUDA type.
  std::shared_ptr<void> device_shared;
  actors::ModelPipeline mp;
  std::vector<runtime::Chunk*> chunks;
  std::vector<runtime::ChunkState> chunk_states;
  // Each step's spec: its M under a batch-size ramp-up (the one pipeline re-plans per step).
  std::shared_ptr<const runtime::StepSpecs> specs;
  actors::ModelPipelineOptions pipeline_options;         // what the pipeline was built with
  std::optional<runtime::sim::AutoReplanner> replanner;  // --planner=auto
  // --device=cuda, where NVML is: a meter per GPU the stages use (empty: not measured).
  std::vector<std::unique_ptr<ops::cuda::EnergyMeter>> energy;
};

// STAGEHAND_FAULTS in one process (rank 0): the rerun state machine's test faults by stage.
// The cluster's faults (kill, withhold) are refused: one process has no rank to lose.
absl::StatusOr<std::map<int, runtime::StageFaults>> OneProcessFaults(int stages) {
  const char* spec = std::getenv(runtime::kFaultsVar);
  ASSIGN_OR_RETURN(runtime::FaultPlan plan, runtime::FaultPlanFromSpec(spec ? spec : "", 0, 0));
  if (plan.kill_at_step != 0 || plan.withhold_receive != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(runtime::kFaultsVar,
                     ": kill and withhold are cluster faults (--nprocs); one process takes "
                     "flip and nan only"));
  }
  std::map<int, runtime::StageFaults> faults;
  for (int stage = 0; stage < stages; ++stage) faults[stage] = runtime::StageFaultsOf(plan, stage);
  return faults;
}

// OpenMP threads for each compute lane: every replica's stages run side by side in this process
// and share its cores (runtime::SplitCores; 0 for one lane or when OMP_NUM_THREADS is set).
// Said once.
int LaneOmpThreads(const LaunchConfig& c) {
  const int lanes = c.stages * c.dp;
  const int cores = runtime::AllowedCores();
  const int threads = runtime::SplitCores(lanes, cores, std::getenv("OMP_NUM_THREADS"));
  if (threads > 0) {
    std::printf(
        "launch: %d compute lanes share this host's %d cores: OpenMP teams of %d thread%s each "
        "(set OMP_NUM_THREADS to choose)\n",
        lanes, cores, threads, threads == 1 ? "" : "s");
  }
  return threads;
}

#ifdef STAGEHAND_CUDA
// --device=cuda in one process: what the stage works share on the GPU. Each replica's stages
// hand activations over on the device (a hand-off per replica: their keys would collide), and
// with --dp each stage's replicas sum their gradient buckets through an in-process device group
// (the link of --link_latency_us / --link_gbps modelled as for the CPU's replicas).
struct CudaShared {
  int gpus = 1;    // the GPUs the stages use: replica d's stage s on GPU (d x P + s) % gpus
  int stages = 1;  // P
  std::vector<std::unique_ptr<runtime::DeviceHandoff>> handoffs;  // by replica
  std::vector<std::unique_ptr<runtime::InProcessGroup>> groups;   // by stage (--dp)
  std::vector<std::unique_ptr<runtime::InProcessDeviceCollective>> members;

  int DeviceOf(int replica, int stage) const { return (replica * stages + stage) % gpus; }

  // The options of the work of replica place.replica's stage `stage`, holding `held`.
  absl::StatusOr<runtime::CudaStageOptions> Seat(int stage, const runtime::DataParallelPlace& place,
                                                 const std::map<int, runtime::Chunk*>& held,
                                                 const actors::LinkModel& link) {
    if (place.expert_group != nullptr) {
      return absl::UnimplementedError("--device=cuda: no expert parallelism yet");
    }
    const int device = DeviceOf(place.replica, stage);
    while (static_cast<int>(handoffs.size()) <= place.replica) {
      const int replica = static_cast<int>(handoffs.size());
      handoffs.push_back(std::make_unique<runtime::DeviceHandoff>(DeviceOf(replica, 0)));
    }
    runtime::CudaStageOptions options;
    options.device = device;
    options.handoff = handoffs[place.replica].get();
    for (const auto& [chunk, unused] : held) options.handoff->SetChunkDevice(chunk, device);
    if (place.replicas > 1) {
      while (static_cast<int>(groups.size()) <= stage) {
        groups.push_back(
            std::make_unique<runtime::InProcessGroup>(place.replicas, link.latency_us, link.gbps));
      }
      members.push_back(std::make_unique<runtime::InProcessDeviceCollective>(
          groups[stage].get(), place.replica, device));
      options.data_parallel = {place.replica, place.replicas, place.group, members.back().get(),
                               place.zero_stage};
    }
    return options;
  }
};

// --device=cuda in one process: how many of the `count` GPUs it sees the stages spread over.
// Every pair must reach the other's memory (peer access: the hand-offs copy between them and
// the replicas' reductions read each other's buffers); then all of them, each pair's access
// enabled; else the first alone, said why.
absl::StatusOr<int> UsableGpus(int count) {
  for (int i = 0; i < count; ++i) {
    for (int j = 0; j < count; ++j) {
      int can = 0;
      if (i == j) continue;
      CUDA_RETURN_IF_ERROR(cudaDeviceCanAccessPeer(&can, i, j));
      if (!can) {
        std::printf(
            "device: GPU %d cannot reach GPU %d's memory (no peer access): every stage "
            "on GPU 0\n",
            i, j);
        return 1;
      }
    }
  }
  for (int i = 0; i < count && count > 1; ++i) {
    CUDA_RETURN_IF_ERROR(cudaSetDevice(i));
    for (int j = 0; j < count; ++j) {
      if (i == j) continue;
      const cudaError_t enabled = cudaDeviceEnablePeerAccess(j, 0);
      if (enabled == cudaErrorPeerAccessAlreadyEnabled) {
        cudaGetLastError();  // clear it: already on is what we want
        continue;
      }
      CUDA_RETURN_IF_ERROR(enabled);
    }
  }
  CUDA_RETURN_IF_ERROR(cudaSetDevice(0));
  return count;
}
#endif

// The data, the model and its pipeline.
absl::Status BuildSession(const LaunchConfig& c, Session& s) {
  ASSIGN_OR_RETURN(s.tokenizer, runtime::MakeTokenizer(c.tokenizer));
  ASSIGN_OR_RETURN(s.dataset, runtime::LoadDataset(c.dataset, *s.tokenizer));
  s.train = std::make_unique<runtime::WindowSampler>(
      runtime::MakeSampler(s.dataset.train, c.chunk.micro_batch_size, c.chunk.seq_len,
                           c.planner_options.num_microbatches * c.dp, c.model.seed));
  s.train->SetSeqLenPolicy(c.dataset.seq_len_policy, c.dataset.microbatch_tokens);
  s.held_out = std::make_unique<runtime::WindowSampler>(runtime::MakeHeldOutSampler(
      s.dataset.validation, c.chunk.micro_batch_size, c.chunk.seq_len, c.model.seed));
  ASSIGN_OR_RETURN(s.model, tools::ModelForTokenizer(c, s.tokenizer->vocab_size()));
  actors::ModelPipelineOptions options;
  options.model = s.model;
  options.chunk = c.chunk;
  options.partition = c.partition;
  options.planner = s.planner;
  options.planner_options = c.planner_options;
  options.optimizer = c.optimizer;
  options.optimizer.states = &s.optimizer_states;
  options.link = c.link;
  options.slow_stage = c.slow_stage;
  options.dp = c.dp;
  options.grad_bucket_mb = c.grad_bucket_mb;
  options.zero = c.zero;
  options.ep = c.ep;
  options.moe_sub_steps = c.moe_sub_steps;
  options.rerun = c.rerun;
  options.lane_omp_threads = c.device == "cpu" ? LaneOmpThreads(c) : 0;
  options.lane_depth = c.lane_depth;
  ASSIGN_OR_RETURN(options.faults, OneProcessFaults(c.stages));
#ifdef STAGEHAND_CUDA
  if (c.device == "cuda") {
    ASSIGN_OR_RETURN(const ops::cuda::DeviceInfo device, ops::cuda::ProbeDevice());
    auto shared = std::make_shared<CudaShared>();
    s.device_shared = shared;
    shared->stages = c.stages;
    ASSIGN_OR_RETURN(shared->gpus, UsableGpus(std::min(device.device_count, c.stages * c.dp)));
    std::printf("device: %s; %s%d stage%s on their streams, %s\n",
                ops::cuda::DescribeDevice(device).c_str(),
                c.dp > 1 ? absl::StrCat(c.dp, " replicas x ").c_str() : "", c.stages,
                c.stages == 1 ? "" : "s",
                shared->gpus == 1
                    ? "all on this GPU"
                    : absl::StrCat("replica d's stage s on GPU (d x ", c.stages, " + s) % ",
                                   shared->gpus, " (of ", device.device_count, ")")
                          .c_str());
    // Energy per step from NVML, where the driver has it (a counter per GPU used).
    for (int gpu = 0; gpu < shared->gpus; ++gpu) {
      absl::StatusOr<std::unique_ptr<ops::cuda::EnergyMeter>> meter =
          ops::cuda::EnergyMeter::Open(gpu);
      if (!meter.ok()) {
        std::printf("energy: not measured (%s)\n", std::string(meter.status().message()).c_str());
        s.energy.clear();
        break;
      }
      s.energy.push_back(*std::move(meter));
    }
    options.stage_work = [shared,
                          link = c.link](const actors::ModelPipelineOptions::StageWorkSpec& w)
        -> absl::StatusOr<std::unique_ptr<runtime::StageWork>> {
      ASSIGN_OR_RETURN(runtime::CudaStageOptions stage_options,
                       shared->Seat(w.stage, w.place, w.held, link));
      ASSIGN_OR_RETURN(
          std::unique_ptr<runtime::CudaStageWork> work,
          runtime::CudaStageWork::Create(w.held, w.num_chunks, w.sampler, w.num_microbatches,
                                         w.optimizer, stage_options));
      return std::unique_ptr<runtime::StageWork>(std::move(work));
    };
  }
#endif
  if (!c.trace.empty() || s.replanner) {  // auto re-plans from the run's own trace
    s.recorder = std::make_unique<runtime::trace::TraceRecorder>("launch");
    options.trace = s.recorder.get();
  }
  ASSIGN_OR_RETURN(runtime::MicrobatchCalculator microbatches, tools::MicrobatchCalculatorOf(c));
  ASSIGN_OR_RETURN(runtime::StepSpecs specs,
                   runtime::StepSpecs::Create(*s.planner, c.planner_options, microbatches));
  s.specs = std::make_shared<const runtime::StepSpecs>(std::move(specs));
  if (c.rampup.has_value()) {
    options.specs = s.specs;
    s.train->SetFirstMicrobatches(
        microbatches.FirstMicrobatches(c.steps, c.chunk.micro_batch_size));
  }
  s.pipeline_options = options;
  ASSIGN_OR_RETURN(s.mp, actors::BuildModelPipeline(options, s.train.get()));
  s.chunks = s.mp.chunk_pointers();
  const runtime::StepSpec& spec = s.mp.pipeline->spec();
  s.optimizer_states.resize(s.chunks.size());
  for (size_t k = 0; k < s.chunks.size(); ++k) {
    s.chunk_states.push_back({s.chunks[k], &s.optimizer_states[k], spec.chunk_to_stage[k]});
  }
  return absl::OkStatus();
}

void PrintBanner(const LaunchConfig& c, const Session& s) {
  int64_t num_params = 0;
  for (runtime::Chunk* chunk : s.chunks) {
    for (const auto& info : chunk->params().infos()) num_params += info.tied_copy ? 0 : info.size;
  }
  const runtime::StepSpec& spec = s.mp.pipeline->spec();
  std::printf(
      "model: %zu layers, d_model %d, %d heads, %.2fM parameters, %s tokenizer (%d tokens)\n",
      s.model.layers.size(), s.model.d_model, s.model.num_heads, num_params / 1e6,
      s.tokenizer->name().c_str(), s.model.vocab_size);
  if (!c.partition.empty()) {
    std::vector<int> sizes;
    for (runtime::Chunk* chunk : s.chunks) {
      sizes.push_back(chunk->spec().end_layer - chunk->spec().first_layer);
    }
    if (runtime::IsProfilePartition(c.partition)) {
      absl::StatusOr<runtime::ProfileCut> cut = runtime::ProfilePartition(
          c.partition, s.model, static_cast<int>(sizes.size()), c.chunk.seq_len);
      if (cut.ok())
        std::printf("partition %s\n", runtime::DescribeProfileCut(c.partition, *cut).c_str());
    } else {
      std::printf("partition %s\n",
                  models::DescribePartition(c.partition, sizes, s.model, c.chunk.seq_len).c_str());
    }
  }
  if (!c.model_config.empty()) {
    std::printf("model config %s: %s\n", c.model_config.c_str(),
                models::DescribeModel(s.model).c_str());
  }
  std::printf("data: %s\n", s.dataset.description.c_str());
  std::printf("pipeline: %d stages, %d chunks, %d microbatches of %d x %s, planner %s\n",
              spec.num_stages, spec.num_chunks, spec.num_microbatches, c.chunk.micro_batch_size,
              runtime::DescribeMicrobatchLength(c.dataset.seq_len_policy, c.chunk.micro_batch_size,
                                                c.chunk.seq_len, c.dataset.microbatch_tokens)
                  .c_str(),
              s.planner->name().c_str());
  if (c.dp > 1) {
    PrintGrid(c, spec.num_stages);
    std::printf(
        "data parallel: %d replicas (actors of this process) x %d microbatches = %d "
        "microbatches a step; gradients summed in replica order, buckets of %g MiB\n",
        c.dp, spec.num_microbatches, c.dp * spec.num_microbatches, c.grad_bucket_mb);
    PrintReplicaSharding(c, /*gloo=*/false);
  }
}

// Initial weights: the newest valid checkpoint (--resume), a Hugging Face GPT-2 file
// (--init_from), or the seeded initialisation. Returns the restored step (0: none).
absl::StatusOr<int64_t> InitialWeights(const LaunchConfig& c, Session& s, RunHistory* history) {
  int64_t resumed = 0;
  if (c.resume) {
    ASSIGN_OR_RETURN(resumed, Resume(c, s.model, s.chunk_states, history));
  }
  if (resumed == 0 && !c.init_from.empty()) {
    RETURN_IF_ERROR(runtime::ImportHf(c.init_from, s.chunks, s.model));
    std::printf("initial weights from %s\n", c.init_from.c_str());
  }
  s.mp.SyncReplicas();  // every replica starts from replica 0's weights and moments
  return resumed;
}

// Step times and per-stage busy time, for the summary line.
struct Throughput {
  double tokens_per_step = 0;  // at the full batch
  double step_tokens = 0;      // of the last step run
  double tokens = 0;           // of every step run
  double total_seconds = 0;
  int64_t steps_run = 0;
  std::vector<double> busy;
  runtime::MoeTokenCounts moe;  // tokens per expert of MoE layers, summed over the steps
  double joules = 0;            // the GPU's energy over energy_steps steps (NVML)
  int64_t energy_steps = 0;
  double energy_tokens = 0;
};

// The joules every meter's GPU has used since its driver loaded, summed (0 without meters).
absl::StatusOr<double> TotalJoules(
    const std::vector<std::unique_ptr<ops::cuda::EnergyMeter>>& meters) {
  double joules = 0;
  for (const auto& meter : meters) {
    ASSIGN_OR_RETURN(const double j, meter->TotalJoules());
    joules += j;
  }
  return joules;
}

// Runs step `step` and counts its time and tokens (its M: a ramp-up's, or the full one).
absl::StatusOr<actors::StepOutcome> TrainStep(const LaunchConfig& c, Session& s, int64_t step,
                                              int64_t first_step, Throughput& t) {
  const std::string ramp = s.specs->RampLine(step, first_step, c.chunk.micro_batch_size, c.dp);
  if (!ramp.empty()) std::printf("%s\n", ramp.c_str());
  absl::StatusOr<double> joules_before = TotalJoules(s.energy);
  ASSIGN_OR_RETURN(actors::StepOutcome outcome, s.mp.pipeline->RunStep(step));
  if (!s.energy.empty()) {
    absl::StatusOr<double> joules_after = TotalJoules(s.energy);
    if (!joules_before.ok() || !joules_after.ok()) {
      std::printf(
          "energy: no longer measured (%s)\n",
          std::string((joules_before.ok() ? joules_after : joules_before).status().message())
              .c_str());
      s.energy.clear();
    } else {
      t.joules += *joules_after - *joules_before;
      ++t.energy_steps;
      t.energy_tokens += double(c.chunk.micro_batch_size) * c.chunk.seq_len *
                         s.specs->ForStep(step).num_microbatches * c.dp;
    }
  }
  const int step_microbatches = s.specs->ForStep(step).num_microbatches * c.dp;
  t.step_tokens = s.train->variable_lengths()
                      ? double(s.train->StepTokens(step, step_microbatches))
                      : double(c.chunk.micro_batch_size) * c.chunk.seq_len * step_microbatches;
  t.tokens += t.step_tokens;
  t.total_seconds += outcome.seconds;
  ++t.steps_run;
  for (size_t k = 0; k < t.busy.size(); ++k) t.busy[k] += outcome.busy_seconds[k];
  t.moe.AddStep(s.mp.ReplicaChunks(0));
  return outcome;
}

// --planner=auto after a step: re-rank from the run's trace (runtime/sim/auto_planner.h) and,
// when another planner of the same placement simulates faster, run the next steps with it on
// the same chunks (results do not depend on the planner).
absl::Status Replan(const LaunchConfig& c, Session& s, int64_t step,
                    const runtime::LossHistory& history) {
  if (!s.replanner || s.recorder == nullptr) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::optional<runtime::sim::AutoPick> pick,
                   s.replanner->AfterStep(s.recorder->Collect(), step));
  if (!pick) return absl::OkStatus();
  ASSIGN_OR_RETURN(s.planner, runtime::PlannerRegistry::Default().Get(pick->planner));
  ASSIGN_OR_RETURN(runtime::MicrobatchCalculator microbatches, tools::MicrobatchCalculatorOf(c));
  ASSIGN_OR_RETURN(runtime::StepSpecs specs,
                   runtime::StepSpecs::Create(*s.planner, c.planner_options, microbatches));
  s.specs = std::make_shared<const runtime::StepSpecs>(std::move(specs));
  s.pipeline_options.planner = s.planner;
  if (s.pipeline_options.specs != nullptr) s.pipeline_options.specs = s.specs;
  ASSIGN_OR_RETURN(s.mp.pipeline,
                   actors::BuildPipelineOn(s.pipeline_options, s.train.get(), s.chunks));
  s.mp.pipeline->SeedLossHistory(history.train);  // the rerun check's running median
  std::printf("auto: after step %lld switching to %s, %s\n", static_cast<long long>(step),
              pick->planner.c_str(), pick->reason.c_str());
  return absl::OkStatus();
}

// Drives the training loop's phases (runtime/train/train_loop.h) to its end.
// --log_timers: the phase timers of the steps since the last report (runtime/train/timers.h).
struct StepTimers {
  std::optional<runtime::PhaseTimers> timers;
  int64_t from = 1;  // the first step not reported yet

  void AddStep(const actors::StepOutcome& out) {
    if (!timers) return;
    std::vector<runtime::PhaseSeconds> per_stage;
    for (const std::vector<double>& v : out.phase_seconds) {
      runtime::PhaseSeconds p{};
      std::copy_n(v.begin(), std::min<size_t>(v.size(), p.size()), p.begin());
      per_stage.push_back(p);
    }
    timers->AddStep(per_stage);
  }
  void Report(int64_t step) {
    if (!timers) return;
    for (const std::string& line : timers->Report(from, step)) std::printf("%s\n", line.c_str());
    timers->Reset();
    from = step + 1;
  }
};

// Held-out evaluation after `step`, timed for --log_timers (on stage 0, which holds chunk 0).
absl::StatusOr<double> TimedEvaluate(const LaunchConfig& c, Session& s, StepTimers& timers) {
  const auto begin = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(double loss, runtime::Evaluate(s.chunks, *s.held_out, c.eval_batches));
  if (timers.timers) {
    timers.timers->Add(
        0, runtime::TimerPhase::kEvaluation,
        std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count());
  }
  return loss;
}

// Drives the training loop's phases (runtime/train/train_loop.h) to its end.
absl::Status RunLoop(const LaunchConfig& c, Session& s, runtime::TrainLoop& loop, Throughput& t) {
  const bool tty = isatty(fileno(stderr));
  runtime::ProgressBar progress(loop.first_step() - 1, c.steps, t.tokens_per_step);
  StepTimers timers;
  // One process: one rank per stage; with --dp every replica's stages (PhaseTimers::Grid).
  if (c.log_timers)
    timers.timers.emplace(runtime::PhaseTimers::Grid(c.dp, static_cast<int>(t.busy.size())));
  timers.from = loop.first_step();
  s.mp.pipeline->SeedLossHistory(loop.history().train);  // the rerun check's running median
  std::signal(SIGINT, RequestStop);
  std::signal(SIGTERM, RequestStop);
  for (runtime::TrainAction a = loop.Start(); a.phase != runtime::TrainPhase::kFinish;) {
    const int64_t step = a.step;
    if (a.phase == runtime::TrainPhase::kEvaluate) {
      ASSIGN_OR_RETURN(double loss, TimedEvaluate(c, s, timers));
      a = loop.Evaluated(step, loss);
      std::printf("%s\n", runtime::HeldOutLine(step, loss).c_str());
    } else if (a.phase == runtime::TrainPhase::kCheckpoint) {
      // ZeRO-1: the replicas' shards of the moments gathered whole for the one format.
      RETURN_IF_ERROR(s.mp.WithFullOptimizerState(
          [&] { return SaveCheckpoint(c, s.model, step, loop.history(), s.chunk_states); }));
      a = loop.Checkpointed(step);
    } else {
      ASSIGN_OR_RETURN(actors::StepOutcome out, TrainStep(c, s, step, loop.first_step(), t));
      RETURN_IF_ERROR(Replan(c, s, step, loop.history()));
      progress.Update(step, out.seconds, out.loss);
      a = loop.StepFinished(step, out.loss, stop_requested);
      timers.AddStep(out);
      for (const std::string& note : out.notes) std::printf("%s\n", note.c_str());
      if (out.skipped) {
        std::printf("step %lld skipped (no update)\n", static_cast<long long>(step));
      } else if (loop.LogDue(step)) {
        std::printf("step %lld loss %.4f tokens/s %.0f lr %.3e\n", static_cast<long long>(step),
                    out.loss, t.step_tokens / out.seconds,
                    runtime::LearningRateAt(c.optimizer, step));
        timers.Report(step);
        std::fflush(stdout);
      }
      if (tty) std::fprintf(stderr, "\r%s", progress.Line().c_str()), std::fflush(stderr);
    }
  }
  if (tty && t.steps_run > 0) std::fprintf(stderr, "\n");
  if (const std::string end = loop.EndLine(); !end.empty()) std::printf("%s\n", end.c_str());
  return absl::OkStatus();
}

void PrintSummary(const Throughput& t) {
  if (t.steps_run == 0) return;
  std::vector<std::string> fractions;
  for (size_t k = 0; k < t.busy.size(); ++k) {
    fractions.push_back(
        absl::StrFormat("s%d %.2f", k, t.busy[k] / std::max(t.total_seconds, 1e-9)));
  }
  std::printf("summary: step time %.1f ms, tokens/s %.0f, busy %s\n",
              1e3 * t.total_seconds / t.steps_run, t.tokens / t.total_seconds,
              absl::StrJoin(fractions, " ").c_str());
  for (const std::string& line : t.moe.SummaryLines()) std::printf("summary: %s\n", line.c_str());
  if (t.energy_steps > 0) {
    std::printf("summary: energy %.1f J a step, %.3f mJ a token (the GPUs' NVML counters)\n",
                t.joules / t.energy_steps, 1e3 * t.joules / t.energy_tokens);
  }
}

// --device=cuda: the stages' device memory (their caching allocators): the largest peak in use
// of a stage, and what all of them reserve from cudaMalloc.
absl::Status PrintDeviceMemory(Session& s) {
#ifdef STAGEHAND_CUDA
  std::mutex mu;  // the stages' lanes run the job at once
  int64_t peak = 0, reserved = 0;
  RETURN_IF_ERROR(s.mp.pipeline->OnEveryStage([&](runtime::StageWork& work) {
    const auto* cuda = dynamic_cast<const runtime::CudaStageWork*>(&work);
    if (cuda == nullptr) return absl::InternalError("a stage of --device=cuda is not on the GPU");
    const ops::cuda::AllocatorStats stats = cuda->MemoryStats();
    std::lock_guard<std::mutex> lock(mu);
    peak = std::max(peak, stats.peak_in_use_bytes);
    reserved += stats.reserved_bytes;
    return absl::OkStatus();
  }));
  std::printf("summary: GPU memory: %.1f MiB at most in use by a stage, %.1f MiB reserved by all\n",
              peak / 1048576.0, reserved / 1048576.0);
#endif
  return absl::OkStatus();
}

// Optimizer state per rank (replica 0's stages; every replica holds as much): the bytes the
// AdamW moments take now, and what they would take unsharded (two floats per parameter).
absl::Status PrintOptimizerMemory(const LaunchConfig& c, Session& s) {
  const runtime::StepSpec& spec = s.mp.pipeline->spec();
  std::vector<std::string> ranks;
  for (int stage = 0; stage < spec.num_stages; ++stage) {
    ASSIGN_OR_RETURN(const int64_t held, s.mp.pipeline->OptimizerStateBytes(stage));
    int64_t floats = 0;
    for (size_t k = 0; k < s.chunks.size(); ++k) {
      if (spec.chunk_to_stage[k] == stage) floats += s.chunks[k]->params().size();
    }
    ranks.push_back(absl::StrFormat("pp %d: %.3f MiB (unsharded %.3f MiB)", stage, held / 1048576.0,
                                    2.0 * floats * sizeof(float) / 1048576.0));
  }
  const std::string how = runtime::OptimizerStateSharding(c.dp, c.ep, c.zero);
  std::printf("summary: optimizer state per rank (AdamW moments held%s): %s\n", how.c_str(),
              absl::StrJoin(ranks, ", ").c_str());
  return absl::OkStatus();
}

// What a run writes at its end: trace, parameters, Hugging Face export, loss curve.
absl::Status WriteOutputs(const LaunchConfig& c, Session& s, const runtime::TrainLoop& loop) {
  if (s.recorder != nullptr && !c.trace.empty()) {
    const runtime::trace::Trace trace = s.recorder->Collect();
    RETURN_IF_ERROR(runtime::trace::WriteChromeJsonFile(trace, c.trace));
    std::printf("trace: %zu events written to %s\n", trace.spans.size(), c.trace.c_str());
    // The runtime's own idle time on the stages' lanes (on a GPU: its streams, device times).
    const runtime::trace::LaneGapMedian gaps = runtime::trace::MedianLaneGap(trace);
    if (gaps.pairs > 0) {
      std::printf(
          "trace: lane gap median %.1f us between an action and the next, already ready, on its "
          "stage's %s (%d pairs)\n",
          gaps.median_us, c.device == "cuda" ? "stream" : "lane", gaps.pairs);
    }
  }
  if (!c.save_params.empty()) {
    RETURN_IF_ERROR(runtime::WriteSafetensors(c.save_params, runtime::CollectParameters(s.chunks)));
    std::printf("saved parameters to %s\n", c.save_params.c_str());
  }
  if (!c.export_path.empty()) {
    RETURN_IF_ERROR(runtime::ExportHf(c.export_path, s.chunks, s.model));
    std::printf("exported Hugging Face %s weights to %s\n",
                runtime::UsesGpt2Names(s.model) ? "GPT-2" : "Llama", c.export_path.c_str());
  }
  if (!c.checkpoint_dir.empty()) {
    ASSIGN_OR_RETURN(
        std::string svg,
        runtime::WriteLossCurve(loop, c.checkpoint_dir,
                                runtime::LossCurveTitle(c.dataset.path, s.model.layers.size(),
                                                        s.model.d_model, s.tokenizer->name())));
    std::printf("loss curve: %s\n", svg.c_str());
  }
  return absl::OkStatus();
}

// --planner=auto before the first step: every registered planner simulated with the GPT cost
// model of this config on the cpu preset (stages sharing this machine's cores); `c.planner`
// becomes the pick. The replanner takes over from the run's own trace.
absl::Status PickAutoPlanner(LaunchConfig& c,
                             std::optional<runtime::sim::AutoReplanner>* replanner) {
  if (const double drift = absl::GetFlag(FLAGS_auto_replan_drift); drift < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--auto_replan_drift=", drift, ", must be >= 0"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<runtime::Tokenizer> tokenizer,
                   runtime::MakeTokenizer(c.tokenizer));
  runtime::sim::Workload workload;
  ASSIGN_OR_RETURN(workload.model, tools::ModelForTokenizer(c, tokenizer->vocab_size()));
  workload.microbatch_size = c.chunk.micro_batch_size;
  workload.seq_len = c.chunk.seq_len;
  const runtime::sim::CostsForSpec estimate =
      runtime::sim::CpuCostsForRun(workload, c.slow_stage.stage, c.slow_stage.factor);
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  const int lanes = cores > 0 && cores < c.stages ? cores : 0;
  const auto& registry = runtime::PlannerRegistry::Default();
  runtime::sim::PlanRequest request;
  request.options = c.planner_options;
  ASSIGN_OR_RETURN(runtime::sim::AutoPick pick,
                   runtime::sim::PickBySimulation(registry, registry.Names(), request, estimate,
                                                  "the GPT cost model (cpu preset)", lanes));
  std::printf("auto: picked %s, %s\n", pick.planner.c_str(), pick.reason.c_str());
  c.planner = pick.planner;
  runtime::sim::ReplanOptions options;
  options.drift = absl::GetFlag(FLAGS_auto_replan_drift);
  options.compute_lanes = lanes;
  replanner->emplace(registry, request, estimate, pick.planner, options);
  return absl::OkStatus();
}

absl::Status Run(const LaunchConfig& config) {
  Session s;
  LaunchConfig c = config;
  if (c.planner == "auto" && c.schedule.empty()) RETURN_IF_ERROR(PickAutoPlanner(c, &s.replanner));
  ASSIGN_OR_RETURN(s.planner, ResolvePlanner(c, &s.loaded));
  RETURN_IF_ERROR(ValidateRampupPlans(c, *s.planner));
  if (c.dry_run) return DryRun(*s.planner, c);
  RETURN_IF_ERROR(BuildSession(c, s));
  PrintBanner(c, s);
  RunHistory history;
  ASSIGN_OR_RETURN(int64_t resumed, InitialWeights(c, s, &history));
  runtime::TrainLoop loop(tools::LoopOptionsOf(c), resumed, std::move(history));
  const runtime::StepSpec& spec = s.mp.pipeline->spec();
  Throughput t;
  t.tokens_per_step =
      double(c.chunk.micro_batch_size) * c.chunk.seq_len * spec.num_microbatches * c.dp;
  t.busy.assign(spec.num_stages, 0.0);
  RETURN_IF_ERROR(RunLoop(c, s, loop, t));
  PrintSummary(t);
  if (c.device == "cuda") RETURN_IF_ERROR(PrintDeviceMemory(s));
  if (t.steps_run > 0 && c.dp > 1) RETURN_IF_ERROR(PrintOptimizerMemory(c, s));
  return WriteOutputs(c, s, loop);
}

}  // namespace
}  // namespace stagehand

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Trains a GPT with Stagehand. Example: launch --steps=300");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::fprintf(stderr, "launch: error: unexpected argument '%s' (flags are --name=value)\n",
                 rest[1]);
    return 2;
  }
  if (absl::GetFlag(FLAGS_list_planners)) {
    std::printf(
        "%s",
        stagehand::tools::PlannerListText(stagehand::runtime::PlannerRegistry::Default()).c_str());
    return 0;
  }
  absl::StatusOr<stagehand::LaunchConfig> config = stagehand::ConfigFromFlags();
  if (!config.ok()) {
    std::fprintf(stderr, "launch: error: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  if (stagehand::tools::ClusterRequested()) {
    if (config->planner == "auto") {
      std::fprintf(
          stderr,
          "launch: error: --planner=auto runs in one process for now: drop --nprocs/--hostfile\n");
      return 2;
    }
    return stagehand::RunClusterLaunch(argv[0], *config);
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
