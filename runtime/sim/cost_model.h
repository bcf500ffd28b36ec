// Cost model for the simulator: per-chunk F/I/W durations, transfer times and per-stage memory
// from a GPT config and device figures (or from a real run's trace), plus op-time jitter and
// a straggler stage. Not a kernel-level model: one matrix rate, one memory bandwidth, one link.
#ifndef STAGEHAND_RUNTIME_SIM_COST_MODEL_H_
#define STAGEHAND_RUNTIME_SIM_COST_MODEL_H_

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "models/gpt_config.h"
#include "runtime/simulator.h"
#include "runtime/step_spec.h"
#include "runtime/sub_step_graph.h"
#include "runtime/trace/trace.h"

namespace stagehand::runtime::sim {

struct DeviceSpec {
  std::string name;
  double matmul_flops = 0;      // sustained dense matrix rate, FLOP/s
  double memory_bandwidth = 0;  // bytes/s, for the element-wise (memory-bound) work
  double link_latency = 0;      // seconds per transfer between neighbour stages
  double link_bandwidth = 0;    // bytes/s between neighbour stages
  double memory_bytes = 0;      // device memory
  int value_bytes = 2;          // bytes per activation value (bf16 = 2, fp32 = 4)
};

// h100, h200 (NVLink between stages), h100_ib, h200_ib (InfiniBand NDR between stages), cpu
// (this 2-core machine, fp32). NotFound listing the names otherwise.
absl::StatusOr<DeviceSpec> DevicePreset(absl::string_view name);
std::vector<std::string> DevicePresetNames();

// What one microbatch is: the model and its batch shape.
struct Workload {
  models::GptConfig model;
  int microbatch_size = 4;  // sequences per microbatch (b)
  int seq_len = 64;         // tokens per sequence (T)
  // Data parallelism: this many pipeline replicas all-reduce their gradients each step (a
  // ring all-reduce over the device's link, after the step's last W; not yet overlapped).
  int data_parallel = 1;
  // Mixture of experts (0: dense MLPs): each layer's MLP is num_experts experts, each token
  // goes to experts_per_token of them, the experts are spread over expert_parallel ranks;
  // dispatch and combine are all-to-alls among those ranks, in F and again in I.
  int num_experts = 0;
  int experts_per_token = 2;
  int expert_parallel = 1;
};

// Ring all-reduce of `bytes` among `ranks`: 2 (n-1)/n bytes over the link, 2 (n-1) latencies.
double AllReduceSeconds(double bytes, int ranks, const DeviceSpec& device);
// All-to-all of `bytes` per rank among `ranks`: (n-1)/n of them leave, n-1 latencies.
double AllToAllSeconds(double bytes, int ranks, const DeviceSpec& device);

// gpt2, gpt2_medium, gpt2_large, gpt2_xl, gpt3_175b, or launch (launch's defaults: 4 layers,
// width 128, 4 heads, byte vocabulary, 64 tokens, 4 sequences). NotFound listing the names.
absl::StatusOr<Workload> WorkloadPreset(absl::string_view name);
std::vector<std::string> WorkloadPresetNames();

struct ChunkCost {
  double forward = 0;           // F, seconds
  double backward_input = 0;    // I
  double backward_weight = 0;   // W (B = I + W)
  double activation_bytes = 0;  // held per microbatch from F until W / B
  double parameters = 0;
  double flops = 0;  // F + I + W model FLOPs of one microbatch (for MFU)
  // Mixture of experts (0 without): the chunk's MoE layers, one dispatch's (or combine's)
  // all-to-all per layer, F and I each holding a dispatch and a combine per layer; and the
  // expert MLPs' part of F, I and W (seconds, all the chunk's layers).
  int moe_layers = 0;
  double all_to_all = 0;
  double experts_forward = 0;
  double experts_backward_input = 0;
  double experts_backward_weight = 0;
};

// Costs of one step shape: what the simulator and the report need.
struct StepCosts {
  std::vector<ChunkCost> chunks;  // (C)
  double transfer = 0;            // seconds per activation or gradient transfer
  double transfer_bytes = 0;
  std::vector<double> stage_static_bytes;  // (P) parameters, gradients, optimizer state
  // (P) multiplies every compute time of the stage (a profile's slow stage); empty = 1.
  std::vector<double> stage_factor;
  double peak_matmul_flops = 0;  // per device, for MFU
  // Seconds each step takes beyond its pipeline window (first to last compute): the
  // optimizer and the step's hand-offs. From a profile; 0 for the GPT model.
  double step_overhead = 0;
  // (P) each stage's data-parallel gradient all-reduce per step (0 without data parallelism);
  // the simulator adds the largest to the step, unoverlapped.
  std::vector<double> stage_reduce;
  // Mixture of experts: every chunk's layers, all MoE (empty without experts, and in a
  // profile), for the simulator's sub-steps (SimulationOptions::sub_steps). A chunk with no layer of its own
  // is listed with one dense layer: its actions run whole.
  SubStepLayout sub_steps;
  // Ranks of an expert-parallel group (Workload::expert_parallel): above 1, each stage's
  // all-to-alls run in its actions' start order (SimulationOptions::ordered_communication).
  int expert_parallel = 1;
};

// ValidateStepSpec, ValidateGptConfig, then the costs of `spec` for `workload` on `device`.
// Layers are split evenly over the chunks in order (chunk 0 also has the embedding, the last
// chunk the head and loss). InvalidArgument naming a bad field.
absl::StatusOr<StepCosts> EstimateStepCosts(const Workload& workload, const DeviceSpec& device,
                                            const StepSpec& spec);

// Costs measured in a real run's trace (--profile): the median F/I/W/B duration of each chunk
// and the median transfer (send) time. A trace with another chunk count than `spec` gives
// each of spec's chunks an equal share of the run's per-microbatch model time; a fused B is
// split evenly into I and W, and I + W make B; with the same stage count, each stage's share of
// the compute (relative to the mean) becomes its stage_factor, so a slow stage stays slow
// under another chunking. Memory comes from `estimate` (the GPT model); step_overhead is the
// median of (step time - pipeline window) over the kept steps.
// InvalidArgument if the trace has no compute span.
struct ProfileOptions {
  // Steps left out first (allocation, first touch, thread start-up), as tools/trace does;
  // never all of them.
  int warmup_steps = 1;
  // Steps longer than this times the median step are left out too (disturbed by other load
  // on the machine; the median step is what a profile predicts); 0 keeps them.
  double outlier_factor = 1.25;
  // The cores the traced run had, when fewer than its stages (0 = a core per stage): each
  // compute span is shrunk to its share of a core while others overlapped it, so that the
  // costs are a stage's own (the simulator then shares `cores` lanes, SimulationOptions).
  int cores = 0;
};
absl::StatusOr<StepCosts> StepCostsFromTrace(const trace::Trace& trace, const StepSpec& spec,
                                             const StepCosts& estimate,
                                             const ProfileOptions& options = {});

// The most activations per stage that fit `memory_cap_bytes` next to the stage's static
// bytes (the largest chunk's activation per microbatch), at least 1; 0 when the cap is 0.
// ResourceExhausted naming the stage if the static bytes alone exceed the cap.
absl::StatusOr<int> MaxInflightForMemory(const StepCosts& costs, const StepSpec& spec,
                                         double memory_cap_bytes);

enum class JitterDistribution { kNone, kUniform, kNormal, kLogNormal };
// "none", "uniform", "normal", "lognormal"; false if unknown.
bool ParseJitterDistribution(absl::string_view name, JitterDistribution* distribution);

struct Variability {
  // Each compute action's time is multiplied by a draw of mean 1: uniform on [1-s, 1+s],
  // normal N(1, s) floored at 0.05, or lognormal with sigma s; s = spread.
  JitterDistribution jitter = JitterDistribution::kNone;
  double spread = 0;
  uint64_t seed = 1;
  // Stage straggler_stage (-1: none) computes straggler_factor times slower from step
  // straggler_from_step (0-based) on.
  int straggler_stage = -1;
  double straggler_factor = 1;
  int straggler_from_step = 0;
};

// OK, or InvalidArgument naming the bad field.
absl::Status ValidateVariability(const Variability& variability, int num_stages);

// ActionCosts for the simulator: StepCosts with jitter and a straggler. One object serves
// consecutive steps (set_step) so that draws continue and a straggler starts at its step.
class ModelCosts : public ActionCosts {
 public:
  ModelCosts(StepCosts costs, Variability variability);
  void set_step(int step) { step_ = step; }
  double ComputeTime(const Action& action) override;
  double TransferTime(const Transfer& transfer) override;
  // A whole action: ComputeTime. An MoE layer's dispatch / combine: all_to_all. Its attn and
  // experts: the action's compute less its all-to-alls, the experts' part and the rest
  // shared evenly among the chunk's MoE layers (stage factor, straggler and a jitter draw
  // as ComputeTime); its rest (residual): 0.
  double SubStepTime(const SubStepOrder& order) override;
  // The jitter-free duration of a compute action.
  double BaseTime(const Action& action) const;
  const StepCosts& costs() const { return costs_; }

 private:
  double Draw();
  double StageFactor(int stage) const;  // stage_factor and the straggler's

  StepCosts costs_;
  Variability variability_;
  std::mt19937_64 rng_;
  int step_ = 0;
};

}  // namespace stagehand::runtime::sim

#endif  // STAGEHAND_RUNTIME_SIM_COST_MODEL_H_
