// The training flags that tools/launch and tools/worker share (model, data, optimizer and
// LR schedule, planner, checkpoints, trace, held-out evaluation), parsed and validated into a
// TrainConfig, and the run description a checkpoint manifest records. Not the launcher's own flags
// (--nprocs, --dry_run, --export ...) and not a trainer.
#ifndef STAGEHAND_TOOLS_TRAIN_FLAGS_H_
#define STAGEHAND_TOOLS_TRAIN_FLAGS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "models/gpt_config.h"
#include "nlohmann/json.hpp"
#include "runtime/checkpoint/checkpoint.h"
#include "runtime/data/dataset.h"
#include "runtime/data/tokenizer.h"
#include "runtime/planner.h"
#include "runtime/train/batch_rampup.h"
#include "runtime/train/grad_buckets.h"
#include "runtime/train/rerun.h"
#include "runtime/train/slow_stage_work.h"
#include "runtime/train/train_loop.h"
#include "runtime/train/training.h"

namespace stagehand::tools {

struct TrainConfig {
  // The schedule: a registered planner by name, or a schedule table from a CSV file.
  std::string planner;
  std::string schedule;
  runtime::PlannerOptions planner_options;  // P, M, max_inflight, chunks_per_stage
  models::GptConfig model;                  // vocab_size: set from the tokenizer at run time
  std::string model_config;                 // --model_config: the file `model` came from
  std::string partition;                    // --partition: "" (equal counts), balanced, 7,5,5,7
  models::ChunkOptions chunk;
  runtime::OptimizerConfig optimizer;  // schedule.total_steps = steps
  int steps = 0;
  int stages = 1;
  int dp = 1;                  // --dp: data-parallel replicas of the pipeline
  int zero = 0;                // --zero: 1 shards AdamW moments over the --dp replicas (ZeRO-1)
  int ep = 1;                  // --ep: expert-parallel group size, carved out of --dp
  bool moe_sub_steps = false;  // --moe_sub_steps: MoE actions as sub-steps under any planner
  int lane_depth = 2;          // --lane_depth: actions a stage's compute lane holds
  std::string device = "cpu";  // --device: cpu or cuda
  double grad_bucket_mb = runtime::kDefaultGradBucketMb;
  std::string save_params;
  runtime::DatasetOptions dataset;
  runtime::TokenizerOptions tokenizer;
  int log_every = 1;
  std::string checkpoint_dir;
  int checkpoint_every = 0;  // 0: at the end only
  int keep_checkpoints = 0;
  bool resume = false;
  int exit_after = 0;
  std::string trace;  // Chrome trace JSON path, or empty
  double hang_timeout_s = 120;
  runtime::SlowStage slow_stage;  // --slow_stage; stage -1 = none
  int eval_batches = 16;          // held-out batches per evaluation
  int eval_every = 100;           // evaluate after every this many steps (0: start and end only)
  runtime::RerunOptions rerun;    // --spike_factor, --on_bad_step, --max_transient
  std::optional<runtime::BatchRampup> rampup;  // --rampup_batch_size (absent: constant M)
  bool log_timers = false;  // phase timers with each step line (runtime/train/timers.h)
};

// Microbatches per step under --rampup_batch_size (constant without it); InvalidArgument
// when the ramp-up does not fit --microbatches x --micro_batch_size.
absl::StatusOr<runtime::MicrobatchCalculator> MicrobatchCalculatorOf(const TrainConfig& c);

// --device against the other flags, for launch and worker alike (one process or workers, one
// GPU each): cuda refuses what the CUDA stage work (runtime/train/cuda_stage_work.h) does not
// train, naming the flag (Unimplemented), and models its kernels do not run
// (models/cuda/cuda_support.h).
absl::Status ValidateDeviceFlags(const TrainConfig& c);

// The planner --planner names when it is not given.
inline constexpr char kDefaultPlanner[] = "1f1b";

// The flags that choose the plan, as given: `planner` is "" when --planner was not given.
struct ScheduleFlags {
  std::string planner;
  std::string schedule;
  runtime::PlannerOptions options;  // P, M, max_inflight, chunks_per_stage
};

// InvalidArgument for a combination in which a flag would be silently ignored: --planner
// with --schedule (the file is the plan), --chunks_per_stage with --schedule (the file places
// the chunks), --chunks_per_stage with a planner whose shape is fixed (1f1b, zb_v ...: its
// MakeSpec does not place that many chunks per stage). An unknown planner is left to the
// caller's registry lookup, which lists the known names.
absl::Status ValidateScheduleFlags(const ScheduleFlags& flags,
                                   const runtime::PlannerRegistry& registry);

// InvalidArgument when `dry_run` and an output flag (name, value) is set: a dry run trains
// nothing and writes none of them.
absl::Status ValidateDryRunFlags(bool dry_run,
                                 const std::vector<std::pair<std::string, std::string>>& outputs);
// Refuses what would overflow, allocate without bound or train to NaN, naming the flag and
// the limit: non-finite or absurd --lr / --weight_decay / --grad_clip, tokens per microbatch
// (--micro_batch_size x --seq_len) and model sizes beyond what the kernels index.
inline constexpr double kMaxLearningRate = 10;
inline constexpr double kMaxWeightDecay = 100;
inline constexpr double kMaxGradClip = 1e6;
inline constexpr int64_t kMaxTokensPerMicrobatch = int64_t{1} << 24;
inline constexpr int kMaxMicrobatches = 1 << 20;
inline constexpr int kMaxStages = 4096;
inline constexpr int kMaxDataParallel = 4096;
inline constexpr double kMaxGradBucketMb = 1 << 20;
absl::Status ValidateTrainConfig(const TrainConfig& c);

// --zero against --dp: 0 or 1, and 1 only with --dp >= 2 (sharding over one replica would
// change nothing, so it is refused rather than silently ignored).
absl::Status ValidateZeroFlag(int zero, int dp);

// --ep against --dp: >= 1 and dividing --dp (expert-parallel groups are carved out of the
// replicas). Whether the model can split its experts is checked when it is built
// (actors::ValidateExpertParallelism).
absl::Status ValidateExpertFlag(int ep, int dp);

// --nprocs against --stages (and --dp), checked before any process starts: 0 (no cluster) or
// 1 to min(--stages, kMaxProcesses), every rank holding at least one stage; with --dp=D > 1
// exactly D x --stages (every rank holds one stage of one replica).
inline constexpr int kMaxProcesses = 1024;
absl::Status ValidateProcessCount(int nprocs, int stages, int dp = 1);

// Reads and validates the shared flags. Relative paths are taken relative to
// $BUILD_WORKING_DIRECTORY under `bazel run`, and the path flags are rewritten to the
// absolute paths, so that forwarding them (TrainFlagArgs) hands workers the same files.
absl::StatusOr<TrainConfig> TrainConfigFromFlags();

// The training loop's policy (runtime/train/train_loop.h) these flags ask for.
runtime::TrainLoopOptions LoopOptionsOf(const TrainConfig& c);

// The names of the shared flags, and "--name=value" for each with its current value: what
// the launcher passes to every worker.
const std::vector<std::string>& TrainFlagNames();
std::vector<std::string> TrainFlagArgs();

// Losses so far (runtime/train/train_loop.h).
using RunHistory = runtime::LossHistory;

// The run's settings that decide its batches and updates, and its history: the launcher's
// part of a checkpoint manifest. Holds nothing that differs between an uninterrupted and a
// resumed run (no times, no process layout), so their final checkpoints are identical.
nlohmann::json RunJson(const TrainConfig& c, const RunHistory& h);
// The history stored in a manifest's run JSON, cut to the checkpoint's step.
RunHistory HistoryFromRunJson(const nlohmann::json& run, int64_t step);

// Whether checkpoint `info` can continue this run: InvalidArgument when it holds another
// model or tokenizer; a warning on stderr (prefixed `who`) for every run setting that
// changed since it was written (the resumed run will then differ from an uninterrupted one).
absl::Status CheckResumable(const runtime::CheckpointInfo& info, const TrainConfig& c,
                            const models::GptConfig& model, const std::string& who);

// The model a run builds with a tokenizer of `vocab_size` tokens: the flags' uniform model
// takes the tokenizer's size; a --model_config model must already have it (else an error
// naming the file, its vocab_size and the tokenizer).
absl::StatusOr<models::GptConfig> ModelForTokenizer(const TrainConfig& c, int vocab_size);

}  // namespace stagehand::tools

#endif  // STAGEHAND_TOOLS_TRAIN_FLAGS_H_
