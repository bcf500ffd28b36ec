// tools/worker: one rank of a Stagehand cluster. Reads its rank, peers and join token from
// the environment (set by tools/launch, or SLURM_* under srun), takes tools/launch's
// training flags (tools/train_flags.h), loads the same data and runs actors/cluster's
// WorkerNode. Not meant to be started by hand on one host: `launch --nprocs=N` starts,
// watches, stops and restarts the workers.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "actors/cluster/worker_node.h"
#include "runtime/checkpoint/checkpoint.h"
#include "runtime/cluster/fault_plan.h"
#include "runtime/data/dataset.h"
#include "runtime/data/tokenizer.h"
#include "runtime/dry_run.h"
#include "runtime/grid/rank_grid.h"
#include "runtime/io/output_path.h"
#include "runtime/io/user_path.h"
#include "runtime/planner.h"
#include "runtime/table_planner.h"
#include "runtime/util/status_macros.h"
#include "tools/cluster/rank_env.h"
#include "tools/planner_list.h"
#include "tools/train_flags.h"

ABSL_FLAG(bool, list_planners, false,
          "print the planners this binary knows and exit (the launcher checks --planner with it)");
ABSL_FLAG(double, join_timeout, 60.0, "seconds to wait for the coordinator and the peers");
ABSL_FLAG(double, collective_latency_us, 0.0,
          "modelled link latency added to every collective call (the launcher's "
          "--link_latency_us)");
ABSL_FLAG(double, collective_gbps, 0.0,
          "modelled link bandwidth of every collective call, 0: unlimited (the launcher's "
          "--link_gbps)");
ABSL_FLAG(int64_t, resume_step, -1,
          "continue from exactly the checkpoint of this step in --checkpoint_dir (0: from the "
          "start); set by the launcher when it restarts the cluster, -1: as --resume says");
ABSL_FLAG(std::string, init_from, "",
          "initial weights from a Hugging Face GPT-2 safetensors file: each rank loads its own "
          "chunks (set by the launcher from its --init_from)");
ABSL_FLAG(std::string, export_part, "",
          "at the end, write this rank's parameters to <stem>.rank<R>.safetensors (set by the "
          "launcher, which writes --export from the parts)");

namespace {

namespace runtime = stagehand::runtime;
namespace tools = stagehand::tools;
namespace cluster = stagehand::actors::cluster;

int Fail(const std::string& rank, const std::string& message) {
  std::fprintf(stderr, "worker %s: error: %s\n", rank.c_str(), message.c_str());
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(1);  // actors and threads are still running: leave without tearing them down
}

std::string Getenv(const std::string& name) {
  const char* v = std::getenv(name.c_str());
  return std::string(v == nullptr ? "" : v);
}

// The checkpoint this rank starts from ("" for step 0): exactly step `resume_step` when it
// is set (a restart), else with --resume the newest valid one.
absl::StatusOr<std::string> ResumeDir(const tools::TrainConfig& c,
                                      const stagehand::models::GptConfig& model,
                                      int64_t resume_step, const std::string& who) {
  absl::StatusOr<runtime::CheckpointInfo> info;
  if (resume_step > 0) {
    info = runtime::VerifyCheckpoint(
        absl::StrCat(c.checkpoint_dir, "/", runtime::CheckpointDirName(resume_step)));
  } else if (resume_step < 0 && c.resume) {
    std::vector<std::string> skipped;
    info = runtime::FindLatestCheckpoint(c.checkpoint_dir, &skipped);
    for (const std::string& s : skipped)
      std::fprintf(stderr, "%s: warning: skipping checkpoint %s\n", who.c_str(), s.c_str());
    if (!info.ok() && info.status().code() == absl::StatusCode::kNotFound && skipped.empty()) {
      std::printf("%s: no checkpoint in %s yet, starting at step 0\n", who.c_str(),
                  c.checkpoint_dir.c_str());
      return std::string();
    }
  } else {
    return std::string();
  }
  if (!info.ok()) return info.status();
  RETURN_IF_ERROR(tools::CheckResumable(*info, c, model, who));
  return info->dir;
}

// The schedule: a registered planner or a CSV table, validated as the launcher does.
absl::StatusOr<const runtime::PlannerDefinition*> Planner(const tools::TrainConfig& c) {
  static std::unique_ptr<runtime::PlannerDefinition>
      loaded;  // lives as long as the workers' actors
  const runtime::PlannerDefinition* planner = nullptr;
  if (!c.schedule.empty()) {
    ASSIGN_OR_RETURN(loaded, runtime::LoadSchedulePlanner(c.schedule));
    planner = loaded.get();
  } else {
    ASSIGN_OR_RETURN(planner, runtime::PlannerRegistry::Default().Get(c.planner));
  }
  RETURN_IF_ERROR(runtime::ValidatePlanner(*planner, c.planner_options).status());
  return planner;
}

// The data, exactly as the one-process launch reads it; and the model's vocabulary.
absl::Status LoadData(const tools::TrainConfig& c, cluster::WorkerOptions& o) {
  ASSIGN_OR_RETURN(std::unique_ptr<runtime::Tokenizer> tokenizer,
                   runtime::MakeTokenizer(c.tokenizer));
  static absl::StatusOr<runtime::Dataset> dataset;  // lives as long as the workers' actors
  dataset = runtime::LoadDataset(c.dataset, *tokenizer);
  RETURN_IF_ERROR(dataset.status());
  o.dataset = &*dataset;
  ASSIGN_OR_RETURN(o.model, tools::ModelForTokenizer(c, tokenizer->vocab_size()));
  if (o.rank == 0) {
    std::printf("data: %s\n", dataset->description.c_str());
    // Variable lengths, as launch's pipeline line names them.
    if (c.dataset.seq_len_policy == runtime::SeqLenPolicy::kVariable) {
      const std::string length =
          runtime::DescribeMicrobatchLength(c.dataset.seq_len_policy, c.chunk.micro_batch_size,
                                            c.chunk.seq_len, c.dataset.microbatch_tokens);
      std::printf("lengths: %d microbatches of %d x %s\n", c.planner_options.num_microbatches,
                  c.chunk.micro_batch_size, length.c_str());
    }
    std::fflush(stdout);
  }
  return absl::OkStatus();
}

// Checkpoints: where to write them, where to start from, and the manifest's description.
absl::Status ConfigureCheckpoints(const tools::TrainConfig& c, const std::string& who,
                                  cluster::WorkerOptions& o) {
  o.checkpoint_dir = c.checkpoint_dir;
  o.keep_checkpoints = c.keep_checkpoints;
  const int64_t resume_step = absl::GetFlag(FLAGS_resume_step);
  if (resume_step >= 0 && c.checkpoint_dir.empty()) {
    return absl::InvalidArgumentError("--resume_step needs --checkpoint_dir");
  }
  ASSIGN_OR_RETURN(o.resume_dir, ResumeDir(c, o.model, resume_step, who));
  tools::RunHistory history;
  if (!o.resume_dir.empty()) {
    ASSIGN_OR_RETURN(runtime::CheckpointInfo info, runtime::VerifyCheckpoint(o.resume_dir));
    history = tools::HistoryFromRunJson(info.meta.run, info.meta.step);
  }
  o.checkpoint_meta.model = o.model;
  o.checkpoint_meta.tokenizer = c.tokenizer;
  o.checkpoint_meta.run = tools::RunJson(c, history);
  return absl::OkStatus();
}

// Every option of the worker node from the flags and the rank's environment.
absl::StatusOr<cluster::WorkerOptions> Options(const tools::RankEnv& env,
                                               const tools::TrainConfig& c,
                                               const std::string& who) {
  cluster::WorkerOptions o;
  o.rank = env.rank;
  o.world_size = env.world_size;
  o.coordinator_host = env.coordinator_host;
  o.coordinator_port = env.coordinator_port;
  o.bind = env.bind;
  o.token = env.token;
  o.join_timeout_s = absl::GetFlag(FLAGS_join_timeout);
  if (!(o.join_timeout_s > 0)) return absl::InvalidArgumentError("--join_timeout must be positive");
  ASSIGN_OR_RETURN(o.planner, Planner(c));
  RETURN_IF_ERROR(LoadData(c, o));
  o.chunk = c.chunk;
  o.seq_len_policy = c.dataset.seq_len_policy;
  o.microbatch_tokens = c.dataset.microbatch_tokens;
  o.partition = c.partition;
  o.planner_options = c.planner_options;
  o.dp = c.dp;
  o.grad_bucket_mb = c.grad_bucket_mb;
  o.zero = c.zero;
  o.ep = c.ep;
  o.moe_sub_steps = c.moe_sub_steps;
  o.lane_depth = c.lane_depth;
  RETURN_IF_ERROR(tools::ValidateDeviceFlags(c));
  o.device = c.device;
  o.local_rank = env.local_rank;
#ifndef STAGEHAND_CUDA
  if (o.device == "cuda") {
    return absl::FailedPreconditionError(
        "--device=cuda: this worker was built without CUDA; build launch and worker with "
        "./bazelw build --config=cuda //tools:launch");
  }
#endif
  o.collective_latency_us = absl::GetFlag(FLAGS_collective_latency_us);
  o.collective_gbps = absl::GetFlag(FLAGS_collective_gbps);
  if (o.collective_latency_us < 0 || o.collective_gbps < 0) {
    return absl::InvalidArgumentError(
        "--collective_latency_us and --collective_gbps must not be negative");
  }
  if (c.rampup.has_value()) {
    ASSIGN_OR_RETURN(o.microbatches, tools::MicrobatchCalculatorOf(c));
  }
  o.optimizer = c.optimizer;
  o.rerun = c.rerun;
  o.log_timers = c.log_timers;
  o.loop = tools::LoopOptionsOf(c);
  o.save_params = c.save_params;
  o.init_from = runtime::ResolveUserPath(absl::GetFlag(FLAGS_init_from));
  o.export_part = runtime::ResolveUserPath(absl::GetFlag(FLAGS_export_part));
  // Each rank writes its own trace file (the launcher merges them); checked now, not at the end.
  if (!c.trace.empty()) {
    o.trace = tools::RankTraceFile(c.trace, o.rank);
    RETURN_IF_ERROR(runtime::CheckOutputFile("--trace", o.trace));
  }
  o.hang_timeout_s = c.hang_timeout_s;
  o.eval_batches = c.eval_batches;
  // Every rank must be started with the same training flags (the launcher forwards its own).
  o.config_text = absl::StrJoin(tools::TrainFlagArgs(), " ");
  RETURN_IF_ERROR(ConfigureCheckpoints(c, who, o));
  // Fault injection for tests: one switch, STAGEHAND_FAULTS (runtime/cluster/fault_plan.h).
  const std::string restart = Getenv("STAGEHAND_RESTART");
  ASSIGN_OR_RETURN(o.faults,
                   runtime::FaultPlanFromSpec(Getenv(runtime::kFaultsVar), o.rank,
                                              std::atoi(restart.empty() ? "0" : restart.c_str())));
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("One rank of a Stagehand cluster; started by `launch --nprocs=N`.");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) return Fail("?", absl::StrCat("unexpected argument '", rest[1], "'"));
  if (absl::GetFlag(FLAGS_list_planners)) {
    std::printf("%s", tools::PlannerListText(runtime::PlannerRegistry::Default()).c_str());
    return 0;
  }
  absl::StatusOr<tools::RankEnv> env = tools::ResolveRankEnv(Getenv);
  if (!env.ok()) return Fail("?", std::string(env.status().message()));
  const std::string rank = std::to_string(env->rank);
  absl::StatusOr<tools::TrainConfig> config = tools::TrainConfigFromFlags();
  if (!config.ok()) return Fail(rank, std::string(config.status().message()));
  if (env->from_slurm && env->rank == 0 && config->dp > 1) {
    // No launcher under Slurm: rank 0 prints the grid the ranks sit on.
    absl::StatusOr<runtime::RankGrid> grid =
        runtime::RankGrid::DataPipeline(config->dp, config->stages);
    if (grid.ok()) std::printf("%s", grid->Describe().c_str());
  }
  absl::StatusOr<cluster::WorkerOptions> options =
      Options(*env, *config, absl::StrCat("rank ", env->rank));
  if (!options.ok()) return Fail(rank, std::string(options.status().message()));
  absl::Status status = cluster::RunWorker(*options);
  if (!status.ok()) return Fail(rank, std::string(status.message()));
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(0);
}
