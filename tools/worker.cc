// tools/worker: one rank of a Stagehand cluster. Reads its rank, peers and join token from
// the environment (set by tools/launch, or SLURM_* under srun), takes the same training
// flags as tools/launch, and runs actors/cluster's WorkerNode. Not meant to be started by
// hand on one host: `launch --nprocs=N` starts, watches and stops the workers.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "actors/cluster/worker_node.h"
#include "models/gpt_config.h"
#include "runtime/data/text_corpus.h"
#include "tools/cluster/rank_env.h"

// The training flags of tools/launch (same names, meanings and defaults).
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
ABSL_FLAG(std::string, data, stagehand::runtime::kDefaultCorpus, "text file or folder of text files");
ABSL_FLAG(std::string, save_params, "", "each rank writes its parameters to <stem>.rank<R>.safetensors");
ABSL_FLAG(int, stages, 4, "pipeline stages (grouped into contiguous blocks per worker)");
ABSL_FLAG(std::string, planner, "1f1b", "schedule planner by name");
ABSL_FLAG(int, max_inflight, 0, "most microbatch activations a stage may hold (0 = planner's)");
ABSL_FLAG(double, hang_timeout, 120.0, "seconds a step may run before the hang report");
ABSL_FLAG(double, join_timeout, 60.0, "seconds to wait for the coordinator and the peers");

namespace {

int Fail(const std::string& rank, const std::string& message) {
  std::fprintf(stderr, "worker %s: error: %s\n", rank.c_str(), message.c_str());
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(1);  // actors and threads are still running: leave without tearing them down
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("One rank of a Stagehand cluster; started by `launch --nprocs=N`.");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) return Fail("?", absl::StrCat("unexpected argument '", rest[1], "'"));
  absl::StatusOr<stagehand::tools::RankEnv> env = stagehand::tools::ResolveRankEnv([](const std::string& name) {
    const char* v = std::getenv(name.c_str());
    return std::string(v == nullptr ? "" : v);
  });
  if (!env.ok()) return Fail("?", std::string(env.status().message()));
  const std::string rank = std::to_string(env->rank);
  namespace cluster = stagehand::actors::cluster;
  cluster::WorkerOptions o;
  o.rank = env->rank;
  o.world_size = env->world_size;
  o.coordinator_host = env->coordinator_host;
  o.coordinator_port = env->coordinator_port;
  o.bind = env->bind;
  o.token = env->token;
  o.join_timeout_s = absl::GetFlag(FLAGS_join_timeout);
  o.model = stagehand::models::UniformGpt(absl::GetFlag(FLAGS_layers), absl::GetFlag(FLAGS_d_model),
                                          absl::GetFlag(FLAGS_heads), 256, absl::GetFlag(FLAGS_seq_len),
                                          absl::GetFlag(FLAGS_seed));
  if (absl::Status s = stagehand::models::ValidateGptConfig(o.model); !s.ok()) {
    return Fail(rank, std::string(s.message()));
  }
  o.chunk.micro_batch_size = absl::GetFlag(FLAGS_micro_batch_size);
  o.chunk.seq_len = absl::GetFlag(FLAGS_seq_len);
  o.chunk.num_microbatches = absl::GetFlag(FLAGS_microbatches);
  o.planner = absl::GetFlag(FLAGS_planner);
  o.planner_options.num_stages = absl::GetFlag(FLAGS_stages);
  o.planner_options.num_microbatches = absl::GetFlag(FLAGS_microbatches);
  o.planner_options.max_inflight = absl::GetFlag(FLAGS_max_inflight);
  o.optimizer.adamw.learning_rate = absl::GetFlag(FLAGS_lr);
  o.optimizer.adamw.weight_decay = absl::GetFlag(FLAGS_weight_decay);
  o.optimizer.grad_clip = absl::GetFlag(FLAGS_grad_clip);
  o.steps = absl::GetFlag(FLAGS_steps);
  o.data = absl::GetFlag(FLAGS_data);
  o.save_params = absl::GetFlag(FLAGS_save_params);
  o.hang_timeout_s = absl::GetFlag(FLAGS_hang_timeout);
  if (o.steps <= 0 || o.chunk.micro_batch_size <= 0 || o.chunk.seq_len <= 0 ||
      o.planner_options.num_stages <= 0 || o.planner_options.num_microbatches <= 0 ||
      o.hang_timeout_s <= 0) {
    return Fail(rank, "--steps, --micro_batch_size, --seq_len, --stages, --microbatches and --hang_timeout must be positive");
  }
  o.config_text = absl::StrCat(
      "layers=", absl::GetFlag(FLAGS_layers), " d_model=", o.model.d_model, " heads=", o.model.num_heads,
      " seq_len=", o.chunk.seq_len, " micro_batch_size=", o.chunk.micro_batch_size,
      " microbatches=", o.chunk.num_microbatches, " lr=", o.optimizer.adamw.learning_rate,
      " weight_decay=", o.optimizer.adamw.weight_decay, " grad_clip=", o.optimizer.grad_clip,
      " seed=", o.model.seed, " data=", o.data, " stages=", o.planner_options.num_stages,
      " planner=", o.planner, " max_inflight=", o.planner_options.max_inflight, " steps=", o.steps);
  if (const char* hook = std::getenv("STAGEHAND_TEST_WITHHOLD_RECEIVE"); hook != nullptr) {
    // "R:N": rank R never posts its Nth receive (tests of the hang report).
    int r = -1, n = 0;
    if (std::sscanf(hook, "%d:%d", &r, &n) == 2 && r == o.rank) o.withhold_receive = n;
  }
  absl::Status status = cluster::RunWorker(o);
  if (!status.ok()) return Fail(rank, std::string(status.message()));
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(0);
}
