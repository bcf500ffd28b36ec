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
#include "runtime/data/dataset.h"
#include "runtime/data/tokenizer.h"
#include "runtime/dry_run.h"
#include "runtime/planner.h"
#include "runtime/table_planner.h"
#include "runtime/io/output_path.h"
#include "tools/cluster/rank_env.h"
#include "tools/planner_list.h"
#include "tools/train_flags.h"

ABSL_FLAG(bool, list_planners, false,
          "print the planners this binary knows and exit (the launcher checks --planner with it)");
ABSL_FLAG(double, join_timeout, 60.0, "seconds to wait for the coordinator and the peers");
ABSL_FLAG(int64_t, resume_step, -1,
          "continue from exactly the checkpoint of this step in --checkpoint_dir (0: from the "
          "start); set by the launcher when it restarts the cluster, -1: as --resume says");

namespace {

namespace runtime = stagehand::runtime;
namespace tools = stagehand::tools;

int Fail(const std::string& rank, const std::string& message) {
  std::fprintf(stderr, "worker %s: error: %s\n", rank.c_str(), message.c_str());
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(1);  // actors and threads are still running: leave without tearing them down
}

// The checkpoint this rank starts from ("" for step 0): exactly step `resume_step` when it
// is set (a restart), else with --resume the newest valid one.
absl::StatusOr<std::string> ResumeDir(const tools::TrainConfig& c, const stagehand::models::GptConfig& model,
                                      int64_t resume_step, const std::string& who) {
  absl::StatusOr<runtime::CheckpointInfo> info;
  if (resume_step > 0) {
    info = runtime::VerifyCheckpoint(absl::StrCat(c.checkpoint_dir, "/", runtime::CheckpointDirName(resume_step)));
  } else if (resume_step < 0 && c.resume) {
    std::vector<std::string> skipped;
    info = runtime::FindLatestCheckpoint(c.checkpoint_dir, &skipped);
    for (const std::string& s : skipped) std::fprintf(stderr, "%s: warning: skipping checkpoint %s\n", who.c_str(), s.c_str());
    if (!info.ok() && info.status().code() == absl::StatusCode::kNotFound && skipped.empty()) {
      std::printf("%s: no checkpoint in %s yet, starting at step 0\n", who.c_str(), c.checkpoint_dir.c_str());
      return std::string();
    }
  } else {
    return std::string();
  }
  if (!info.ok()) return info.status();
  if (absl::Status s = tools::CheckResumable(*info, c, model, who); !s.ok()) return s;
  return info->dir;
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
  absl::StatusOr<tools::RankEnv> env = tools::ResolveRankEnv([](const std::string& name) {
    const char* v = std::getenv(name.c_str());
    return std::string(v == nullptr ? "" : v);
  });
  if (!env.ok()) return Fail("?", std::string(env.status().message()));
  const std::string rank = std::to_string(env->rank);
  const std::string who = absl::StrCat("rank ", env->rank);
  absl::StatusOr<tools::TrainConfig> config = tools::TrainConfigFromFlags();
  if (!config.ok()) return Fail(rank, std::string(config.status().message()));
  const tools::TrainConfig& c = *config;
  namespace cluster = stagehand::actors::cluster;
  cluster::WorkerOptions o;
  o.rank = env->rank;
  o.world_size = env->world_size;
  o.coordinator_host = env->coordinator_host;
  o.coordinator_port = env->coordinator_port;
  o.bind = env->bind;
  o.token = env->token;
  o.join_timeout_s = absl::GetFlag(FLAGS_join_timeout);
  if (!(o.join_timeout_s > 0)) return Fail(rank, "--join_timeout must be positive");

  // The schedule: a registered planner or a CSV table, validated as the launcher does.
  static std::unique_ptr<runtime::PlannerDefinition> loaded;
  if (!c.schedule.empty()) {
    absl::StatusOr<std::unique_ptr<runtime::PlannerDefinition>> table = runtime::LoadSchedulePlanner(c.schedule);
    if (!table.ok()) return Fail(rank, std::string(table.status().message()));
    loaded = std::move(*table);
    o.planner = loaded.get();
  } else {
    absl::StatusOr<const runtime::PlannerDefinition*> planner = runtime::PlannerRegistry::Default().Get(c.planner);
    if (!planner.ok()) return Fail(rank, std::string(planner.status().message()));
    o.planner = *planner;
  }
  if (absl::StatusOr<runtime::ScheduleTable> plan = runtime::ValidatePlanner(*o.planner, c.planner_options);
      !plan.ok()) {
    return Fail(rank, std::string(plan.status().message()));
  }

  // The data, exactly as the one-process launch reads it.
  absl::StatusOr<std::unique_ptr<runtime::Tokenizer>> tokenizer = runtime::MakeTokenizer(c.tokenizer);
  if (!tokenizer.ok()) return Fail(rank, std::string(tokenizer.status().message()));
  static absl::StatusOr<runtime::Dataset> dataset = runtime::LoadDataset(c.dataset, **tokenizer);
  if (!dataset.ok()) return Fail(rank, std::string(dataset.status().message()));
  o.dataset = &*dataset;
  o.model = c.model;
  o.model.vocab_size = (*tokenizer)->vocab_size();
  if (o.rank == 0) {
    std::printf("data: %s\n", dataset->description.c_str());
    std::fflush(stdout);
  }
  o.chunk = c.chunk;
  o.planner_options = c.planner_options;
  o.optimizer = c.optimizer;
  o.steps = c.steps;
  o.stop_after = c.exit_after;
  o.log_every = c.log_every;
  o.save_params = c.save_params;
  // Each rank writes its own trace file (the launcher merges them); checked now, not at the end.
  if (!c.trace.empty()) {
    o.trace = tools::RankTraceFile(c.trace, o.rank);
    if (absl::Status s = runtime::CheckOutputFile("--trace", o.trace); !s.ok()) {
      return Fail(rank, std::string(s.message()));
    }
  }
  o.hang_timeout_s = c.hang_timeout_s;
  o.eval_batches = c.eval_batches;
  o.eval_every = c.eval_every;
  // Every rank must be started with the same training flags (the launcher forwards its own).
  o.config_text = absl::StrJoin(tools::TrainFlagArgs(), " ");

  // Checkpoints: where to write them, and where to start from.
  o.checkpoint_dir = c.checkpoint_dir;
  o.checkpoint_every = c.checkpoint_every;
  o.keep_checkpoints = c.keep_checkpoints;
  const int64_t resume_step = absl::GetFlag(FLAGS_resume_step);
  if (resume_step >= 0 && c.checkpoint_dir.empty()) return Fail(rank, "--resume_step needs --checkpoint_dir");
  absl::StatusOr<std::string> resume_dir = ResumeDir(c, o.model, resume_step, who);
  if (!resume_dir.ok()) return Fail(rank, std::string(resume_dir.status().message()));
  o.resume_dir = *resume_dir;
  tools::RunHistory history;
  if (!o.resume_dir.empty()) {
    absl::StatusOr<runtime::CheckpointInfo> info = runtime::VerifyCheckpoint(o.resume_dir);
    if (!info.ok()) return Fail(rank, std::string(info.status().message()));
    history = tools::HistoryFromRunJson(info->meta.run, info->meta.step);
  }
  o.checkpoint_meta.model = o.model;
  o.checkpoint_meta.tokenizer = c.tokenizer;
  o.checkpoint_meta.run = tools::RunJson(c, history);

  // Test hooks.
  if (const char* hook = std::getenv("STAGEHAND_TEST_WITHHOLD_RECEIVE"); hook != nullptr) {
    // "R:N": rank R never posts its Nth receive (tests of the hang report).
    int r = -1, n = 0;
    if (std::sscanf(hook, "%d:%d", &r, &n) == 2 && r == o.rank) o.withhold_receive = n;
  }
  if (const char* hook = std::getenv("STAGEHAND_TEST_KILL"); hook != nullptr) {
    // "R:S[:A]": rank R kills itself (SIGKILL) in step S while the launcher's restart count
    // (STAGEHAND_RESTART) is below A (default 1: the first attempt only).
    int r = -1, attempts = 1;
    long long step = 0;
    const char* restart = std::getenv("STAGEHAND_RESTART");
    if (std::sscanf(hook, "%d:%lld:%d", &r, &step, &attempts) >= 2 && r == o.rank &&
        std::atoi(restart == nullptr ? "0" : restart) < attempts) {
      o.kill_at_step = step;
    }
  }
  absl::Status status = cluster::RunWorker(o);
  if (!status.ok()) return Fail(rank, std::string(status.message()));
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(0);
}
