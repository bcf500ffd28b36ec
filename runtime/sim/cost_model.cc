// The GPT cost model, its presets, trace profiles and variability.
// Not a simulator: Simulate (runtime/simulator.h) runs what these costs say.
#include "runtime/sim/cost_model.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime::sim {
namespace {

std::vector<DeviceSpec> Devices() {
  // H100 / H200 SXM: the same tensor cores (bf16 dense ~790 TFLOP/s sustained, as measured),
  // HBM3 3.35 TB/s vs HBM3e 4.8 TB/s, 80 vs 141 GB. NVLink 4: 450 GB/s per direction;
  // InfiniBand NDR: 50 GB/s per direction. The CPU figures are this 2-core machine in fp32
  // (OpenBLAS sgemm, memcpy, an in-process hand-off); calibrate with --profile.
  return {
      {"h100", 790e12, 3.35e12, 3e-6, 450e9, 80e9, 2},
      {"h200", 790e12, 4.8e12, 3e-6, 450e9, 141e9, 2},
      {"h100_ib", 790e12, 3.35e12, 8e-6, 50e9, 80e9, 2},
      {"h200_ib", 790e12, 4.8e12, 8e-6, 50e9, 141e9, 2},
      {"cpu", 50e9, 10e9, 20e-6, 5e9, 16e9, 4},
  };
}

struct NamedWorkload {
  const char* name;
  int layers, d_model, heads, vocab, seq_len, microbatch_size;
};

constexpr NamedWorkload kWorkloads[] = {
    {"launch", 4, 128, 4, 256, 64, 4},
    {"gpt2", 12, 768, 12, 50257, 1024, 4},
    {"gpt2_medium", 24, 1024, 16, 50257, 1024, 4},
    {"gpt2_large", 36, 1280, 20, 50257, 1024, 4},
    {"gpt2_xl", 48, 1600, 25, 50257, 1024, 4},
    {"gpt3_175b", 96, 12288, 96, 50257, 2048, 1},
};

// The cost of `layers` transformer layers for n = b*T tokens (letters as in gpt_config.h).
ChunkCost LayerCosts(const Workload& w, const DeviceSpec& d, double layers) {
  const double n = static_cast<double>(w.microbatch_size) * w.seq_len;  // tokens
  const double c = w.model.d_model, t = w.seq_len, heads = w.model.num_heads;
  const double vb = d.value_bytes;
  // Mixture of experts: each token passes experts_per_token expert MLPs.
  const double mlp_passes = w.num_experts > 0 ? w.experts_per_token : 1;
  const double matmul = (8 + 16 * mlp_passes) * n * c * c;  // qkv 6, proj 2, mlp 16 (x n c^2)
  const double attention = 4 * n * t * c;                   // QK^T and AV
  const double elementwise = 20 * n * c * vb + 3 * heads * n * t * vb;  // LN, GeLU, softmax
  ChunkCost cost;
  cost.forward =
      layers * ((matmul + attention) / d.matmul_flops + elementwise / d.memory_bandwidth);
  cost.backward_input =
      layers * ((matmul + 2 * attention) / d.matmul_flops + 2 * elementwise / d.memory_bandwidth);
  cost.backward_weight = layers * (matmul / d.matmul_flops + 4 * n * c * vb / d.memory_bandwidth);
  // Korthikanti et al.: s*b*h*(34 + 5*a*s/h) bytes at 2 bytes a value, no recomputation.
  cost.activation_bytes = layers * (n * c * 34 + 5 * heads * n * t) * vb / 2;
  // Each rank holds num_experts / expert_parallel experts' MLPs (8 c^2 each).
  const double mlps =
      w.num_experts > 0 ? static_cast<double>(w.num_experts) / w.expert_parallel : 1;
  cost.parameters = layers * (4 * c * c + 8 * c * c * mlps + 13 * c);
  cost.flops = layers * (3 * matmul + 3 * attention);
  if (w.num_experts > 0) {  // dispatch + combine in F, and again (their gradients) in I
    const double routed = n * w.experts_per_token * c * vb;
    const double exchange = 2 * AllToAllSeconds(routed, w.expert_parallel, d);
    cost.forward += layers * exchange;
    cost.backward_input += layers * exchange;
    cost.moe_layers = static_cast<int>(layers);
    cost.all_to_all = exchange / 2;
    const double experts = layers * 16 * mlp_passes * n * c * c / d.matmul_flops;
    cost.experts_forward = cost.experts_backward_input = cost.experts_backward_weight = experts;
  }
  return cost;
}

void Add(const ChunkCost& part, ChunkCost* total) {
  total->forward += part.forward;
  total->backward_input += part.backward_input;
  total->backward_weight += part.backward_weight;
  total->activation_bytes += part.activation_bytes;
  total->parameters += part.parameters;
  total->flops += part.flops;
}

// Embedding lookup (chunk 0) and the head with its loss (the last chunk).
ChunkCost EmbeddingCost(const Workload& w, const DeviceSpec& d) {
  const double n = static_cast<double>(w.microbatch_size) * w.seq_len, c = w.model.d_model;
  ChunkCost cost;
  cost.forward = 3 * n * c * d.value_bytes / d.memory_bandwidth;
  cost.backward_weight = 3 * n * c * d.value_bytes / d.memory_bandwidth;
  cost.parameters = (static_cast<double>(w.model.vocab_size) + w.model.max_seq_len) * c;
  return cost;
}
ChunkCost HeadCost(const Workload& w, const DeviceSpec& d) {
  const double n = static_cast<double>(w.microbatch_size) * w.seq_len, c = w.model.d_model;
  const double v = w.model.vocab_size;
  const double matmul = 2 * n * c * v;
  const double logits = 3 * n * v * d.value_bytes;  // softmax and loss passes
  ChunkCost cost;
  cost.forward = matmul / d.matmul_flops + logits / d.memory_bandwidth;
  cost.backward_input = matmul / d.matmul_flops + logits / d.memory_bandwidth;
  cost.backward_weight = matmul / d.matmul_flops;
  cost.activation_bytes = n * v * d.value_bytes + n * c * d.value_bytes;
  cost.parameters = v * c;  // tied with the embedding: a copy on the last stage
  cost.flops = 3 * matmul;
  return cost;
}

double Median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::nth_element(values.begin(), values.begin() + values.size() / 2, values.end());
  return values[values.size() / 2];
}

// The steps of `trace` less its first `options.warmup_steps` and those longer than
// outlier_factor x the median of the rest (all of them if that leaves none).
std::set<int64_t> KeptSteps(const trace::Trace& trace, const ProfileOptions& options) {
  std::set<int64_t> steps;
  for (const trace::Span& span : trace.spans) steps.insert(span.step);
  std::set<int64_t> kept = steps;
  int warmup = options.warmup_steps;
  for (auto it = steps.begin(); it != steps.end() && warmup-- > 0; ++it) kept.erase(*it);
  if (kept.empty()) return steps;
  std::vector<double> lengths;
  std::map<int64_t, double> length;
  for (const trace::StepSpan& step : trace.steps) {
    if (!kept.count(step.step)) continue;
    length[step.step] = step.end_us - step.begin_us;
    lengths.push_back(step.end_us - step.begin_us);
  }
  if (options.outlier_factor <= 0 || lengths.size() < 3) return kept;
  const double limit = options.outlier_factor * Median(lengths);
  for (const auto& [step, us] : length) {
    if (us > limit) kept.erase(step);
  }
  return kept;
}

// Per span: 1, or for a compute span with `cores` > 0 the mean over its time of
// min(1, cores / compute spans running then) -- its share of a core.
std::vector<double> CoreShares(const trace::Trace& trace, int cores) {
  std::vector<double> shares(trace.spans.size(), 1);
  if (cores <= 0) return shares;
  std::vector<std::pair<double, int>> edges;  // (time, +1 begin / -1 end), ends first at a tie
  for (const trace::Span& span : trace.spans) {
    if (span.lane != trace::Lane::kCompute || !IsCompute(span.kind)) continue;
    edges.push_back({span.begin_us, 1});
    edges.push_back({span.end_us, -1});
  }
  std::sort(edges.begin(), edges.end());
  // Piecewise-constant share over time, integrated: cumulative[i] = integral up to times[i].
  std::vector<double> times, cumulative;
  int running = 0;
  double integral = 0;
  for (std::size_t i = 0; i < edges.size(); ++i) {
    if (i > 0) {
      integral += (edges[i].first - edges[i - 1].first) *
                  (running > cores ? static_cast<double>(cores) / running : 1.0);
    }
    running += edges[i].second;
    times.push_back(edges[i].first);
    cumulative.push_back(integral);
  }
  const auto integral_at = [&](double t) {
    // The last edge at t: the integral is continuous, so any index at t gives the same value.
    const std::size_t i = std::upper_bound(times.begin(), times.end(), t) - times.begin();
    return i == 0 ? 0.0 : cumulative[i - 1];
  };
  for (std::size_t k = 0; k < trace.spans.size(); ++k) {
    const trace::Span& span = trace.spans[k];
    if (span.lane != trace::Lane::kCompute || !IsCompute(span.kind)) continue;
    if (span.duration_us() <= 0) continue;
    shares[k] = (integral_at(span.end_us) - integral_at(span.begin_us)) / span.duration_us();
  }
  return shares;
}

// Median over `kept` steps of the step's length less its pipeline window (microseconds);
// 0 without step spans.
double StepOverhead(const trace::Trace& trace, const std::set<int64_t>& kept) {
  std::map<int64_t, std::pair<double, double>> window;  // step -> (first begin, last end)
  for (const trace::Span& span : trace.spans) {
    if (span.lane != trace::Lane::kCompute || !IsCompute(span.kind)) continue;
    auto [it, inserted] = window.emplace(span.step, std::make_pair(span.begin_us, span.end_us));
    it->second.first = std::min(it->second.first, span.begin_us);
    it->second.second = std::max(it->second.second, span.end_us);
  }
  std::vector<double> overheads;
  for (const trace::StepSpan& step : trace.steps) {
    const auto it = window.find(step.step);
    if (!kept.count(step.step) || it == window.end()) continue;
    overheads.push_back(
        std::max(0.0, (step.end_us - step.begin_us) - (it->second.second - it->second.first)));
  }
  return Median(overheads);
}

}  // namespace

double AllReduceSeconds(double bytes, int ranks, const DeviceSpec& device) {
  if (ranks <= 1) return 0;
  const double steps = ranks - 1;
  return 2 * steps / ranks * bytes / device.link_bandwidth + 2 * steps * device.link_latency;
}

double AllToAllSeconds(double bytes, int ranks, const DeviceSpec& device) {
  if (ranks <= 1) return 0;
  const double others = ranks - 1;
  return others / ranks * bytes / device.link_bandwidth + others * device.link_latency;
}

absl::StatusOr<DeviceSpec> DevicePreset(absl::string_view name) {
  for (const DeviceSpec& device : Devices()) {
    if (device.name == name) return device;
  }
  return absl::NotFoundError(absl::StrCat(
      "--device=", name, " is not a preset; known: ", absl::StrJoin(DevicePresetNames(), ", ")));
}

std::vector<std::string> DevicePresetNames() {
  std::vector<std::string> names;
  for (const DeviceSpec& device : Devices()) names.push_back(device.name);
  return names;
}

absl::StatusOr<Workload> WorkloadPreset(absl::string_view name) {
  for (const NamedWorkload& w : kWorkloads) {
    if (w.name != name) continue;
    Workload workload;
    workload.model = models::UniformGpt(w.layers, w.d_model, w.heads, w.vocab, w.seq_len, 1337);
    workload.seq_len = w.seq_len;
    workload.microbatch_size = w.microbatch_size;
    return workload;
  }
  return absl::NotFoundError(absl::StrCat(
      "--model=", name, " is not a preset; known: ", absl::StrJoin(WorkloadPresetNames(), ", ")));
}

std::vector<std::string> WorkloadPresetNames() {
  std::vector<std::string> names;
  for (const NamedWorkload& w : kWorkloads) names.push_back(w.name);
  return names;
}

namespace {

// Each of the C chunks' share of the layers (consecutive, as even as the count allows): its
// costs and, with experts, its sub-step layout.
void AddChunkLayers(const Workload& workload, const DeviceSpec& device, int num_chunks,
                    StepCosts* costs) {
  const int num_layers = static_cast<int>(workload.model.layers.size());  // L
  costs->chunks.resize(num_chunks);
  for (int c = 0; c < num_chunks; ++c) {
    const int first = static_cast<int>(static_cast<int64_t>(c) * num_layers / num_chunks);
    const int end = static_cast<int>(static_cast<int64_t>(c + 1) * num_layers / num_chunks);
    costs->chunks[c] = LayerCosts(workload, device, end - first);
    if (workload.num_experts > 0) {
      costs->sub_steps[c] =
          ChunkLayers{first, std::vector<bool>(std::max(end - first, 1), end > first)};
    }
  }
}

}  // namespace

absl::StatusOr<StepCosts> EstimateStepCosts(const Workload& workload, const DeviceSpec& device,
                                            const StepSpec& spec) {
  RETURN_IF_ERROR(ValidateStepSpec(spec));
  // The structure must be valid; the size may exceed what this build trains (1 layer is
  // checked for the parameter bound: the simulator plans models of any depth).
  models::GptConfig probe = workload.model;
  probe.layers.resize(std::min<std::size_t>(probe.layers.size(), 1));
  for (const models::LayerSpec& layer : workload.model.layers) {
    probe.layers[0] = layer;
    RETURN_IF_ERROR(models::ValidateGptConfig(probe));
  }
  if (workload.model.layers.empty()) RETURN_IF_ERROR(models::ValidateGptConfig(workload.model));
  if (workload.data_parallel < 1 || workload.expert_parallel < 1 || workload.num_experts < 0 ||
      (workload.num_experts > 0 &&
       (workload.experts_per_token < 1 || workload.experts_per_token > workload.num_experts ||
        workload.num_experts % workload.expert_parallel != 0))) {
    return absl::InvalidArgumentError(
        absl::StrCat("Workload: data_parallel = ", workload.data_parallel, ", num_experts = ",
                     workload.num_experts, ", experts_per_token = ", workload.experts_per_token,
                     ", expert_parallel = ", workload.expert_parallel,
                     ": want data_parallel >= 1, expert_parallel >= 1 dividing num_experts, and "
                     "1 <= experts_per_token <= num_experts"));
  }
  if (workload.microbatch_size < 1 || workload.seq_len < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("Workload: microbatch_size = ", workload.microbatch_size,
                     " and seq_len = ", workload.seq_len, " must be >= 1"));
  }
  if (!(device.matmul_flops > 0) || !(device.memory_bandwidth > 0) ||
      !(device.link_bandwidth > 0) || device.link_latency < 0 || device.value_bytes < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("DeviceSpec ", device.name,
                     ": matmul_flops, memory_bandwidth and link_bandwidth must be "
                     "> 0, link_latency >= 0, value_bytes >= 1"));
  }
  const int num_chunks = spec.num_chunks;  // C
  StepCosts costs;
  AddChunkLayers(workload, device, num_chunks, &costs);
  Add(EmbeddingCost(workload, device), &costs.chunks.front());
  Add(HeadCost(workload, device), &costs.chunks.back());
  costs.transfer_bytes = static_cast<double>(workload.microbatch_size) * workload.seq_len *
                         workload.model.d_model * device.value_bytes;
  costs.transfer = device.link_latency + costs.transfer_bytes / device.link_bandwidth;
  // Weights (value_bytes), fp32 gradients, fp32 master copy where weights are bf16, Adam m, v.
  const double bytes_per_parameter = device.value_bytes + 4 + (device.value_bytes < 4 ? 4 : 0) + 8;
  costs.stage_static_bytes.assign(spec.num_stages, 0);
  for (int c = 0; c < num_chunks; ++c) {
    costs.stage_static_bytes[spec.chunk_to_stage[c]] +=
        costs.chunks[c].parameters * bytes_per_parameter;
  }
  costs.peak_matmul_flops = device.matmul_flops;
  costs.expert_parallel = workload.num_experts > 0 ? workload.expert_parallel : 1;
  costs.stage_reduce.assign(spec.num_stages, 0);
  for (int c = 0; c < num_chunks; ++c) {  // fp32 gradients
    costs.stage_reduce[spec.chunk_to_stage[c]] +=
        AllReduceSeconds(4 * costs.chunks[c].parameters, workload.data_parallel, device);
  }
  return costs;
}

absl::StatusOr<StepCosts> StepCostsFromTrace(const trace::Trace& trace, const StepSpec& spec,
                                             const StepCosts& estimate,
                                             const ProfileOptions& options) {
  const std::set<int64_t> kept = KeptSteps(trace, options);
  const std::vector<double> shares = CoreShares(trace, options.cores);
  const double us_to_seconds = 1e-6 / (trace.virtual_time ? 1e3 : 1);
  std::map<std::pair<int, ActionKind>, std::vector<double>> durations;  // (chunk, kind) -> s
  std::vector<double> sends;
  for (std::size_t k = 0; k < trace.spans.size(); ++k) {
    const trace::Span& span = trace.spans[k];
    if (!kept.count(span.step)) continue;
    const double seconds = span.duration_us() * us_to_seconds;
    if (span.lane == trace::Lane::kCompute && IsCompute(span.kind)) {
      durations[{span.chunk, span.kind}].push_back(seconds * shares[k]);
    } else if (span.lane == trace::Lane::kSend) {
      sends.push_back(seconds);
    }
  }
  if (durations.empty()) {
    return absl::InvalidArgumentError("--profile: the trace has no F/I/W/B compute span");
  }
  // Per trace chunk: F, I, W (a fused B split evenly).
  const int trace_chunks = std::max(trace.num_chunks, 1);
  std::vector<ChunkCost> measured(trace_chunks);
  for (const auto& [key, values] : durations) {
    const auto& [chunk, kind] = key;
    if (chunk < 0 || chunk >= trace_chunks) continue;
    const double median = Median(values);
    ChunkCost& cost = measured[chunk];
    if (kind == ActionKind::kForward) cost.forward = median;
    if (kind == ActionKind::kBackwardInput) cost.backward_input = median;
    if (kind == ActionKind::kBackwardWeight) cost.backward_weight = median;
    if (kind == ActionKind::kBackward) cost.backward_input = cost.backward_weight = median / 2;
  }
  StepCosts costs = estimate;
  if (static_cast<int>(costs.chunks.size()) != spec.num_chunks) {
    return absl::InvalidArgumentError("StepCostsFromTrace: the estimate is for another spec");
  }
  costs.stage_factor.clear();  // measured: a slow stage's chunks are slow in the profile
  costs.sub_steps.clear();     // measured actions run whole (no MoE sub-step split)
  if (trace_chunks == spec.num_chunks) {
    for (int c = 0; c < spec.num_chunks; ++c) {
      costs.chunks[c].forward = measured[c].forward;
      costs.chunks[c].backward_input = measured[c].backward_input;
      costs.chunks[c].backward_weight = measured[c].backward_weight;
    }
  } else {
    ChunkCost total;
    for (const ChunkCost& cost : measured) Add(cost, &total);
    // Per stage: compute time per chunk held, relative to the mean over stages.
    if (trace.num_stages == spec.num_stages) {
      std::vector<double> busy(spec.num_stages, 0);
      std::vector<std::set<int>> held(spec.num_stages);
      for (const trace::Span& span : trace.spans) {
        if (span.lane != trace::Lane::kCompute || !IsCompute(span.kind)) continue;
        if (span.stage < 0 || span.stage >= spec.num_stages) continue;
        busy[span.stage] += span.duration_us();
        held[span.stage].insert(span.chunk);
      }
      double mean = 0;
      for (int s = 0; s < spec.num_stages; ++s) {
        busy[s] /= std::max<size_t>(1, held[s].size());
        mean += busy[s] / spec.num_stages;
      }
      if (mean > 0) {
        costs.stage_factor.resize(spec.num_stages);
        for (int s = 0; s < spec.num_stages; ++s) costs.stage_factor[s] = busy[s] / mean;
      }
    }
    for (ChunkCost& cost : costs.chunks) {
      cost.forward = total.forward / spec.num_chunks;
      cost.backward_input = total.backward_input / spec.num_chunks;
      cost.backward_weight = total.backward_weight / spec.num_chunks;
    }
  }
  if (!sends.empty()) costs.transfer = Median(sends);
  costs.step_overhead = StepOverhead(trace, kept) * us_to_seconds;
  return costs;
}

absl::StatusOr<int> MaxInflightForMemory(const StepCosts& costs, const StepSpec& spec,
                                         double memory_cap_bytes) {
  if (memory_cap_bytes <= 0) return 0;
  int most = -1;
  for (int s = 0; s < spec.num_stages; ++s) {
    double largest = 0;
    for (int c = 0; c < spec.num_chunks; ++c) {
      if (spec.chunk_to_stage[c] == s)
        largest = std::max(largest, costs.chunks[c].activation_bytes);
    }
    const double free = memory_cap_bytes - costs.stage_static_bytes[s];
    if (free <= 0) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "stage ", s, " needs ", costs.stage_static_bytes[s] / 1e9,
          " GB for parameters, gradients and optimizer state, above the memory cap of ",
          memory_cap_bytes / 1e9, " GB"));
    }
    const int fits = largest > 0 ? static_cast<int>(std::min(free / largest, 1e9)) : 1 << 30;
    most = most < 0 ? fits : std::min(most, fits);
  }
  return std::max(most, 1);
}

bool ParseJitterDistribution(absl::string_view name, JitterDistribution* distribution) {
  const std::pair<const char*, JitterDistribution> names[] = {
      {"none", JitterDistribution::kNone},
      {"uniform", JitterDistribution::kUniform},
      {"normal", JitterDistribution::kNormal},
      {"lognormal", JitterDistribution::kLogNormal},
  };
  for (const auto& [text, value] : names) {
    if (name == text) {
      *distribution = value;
      return true;
    }
  }
  return false;
}

absl::Status ValidateVariability(const Variability& v, int num_stages) {
  if (!std::isfinite(v.spread) || v.spread < 0 ||
      (v.jitter == JitterDistribution::kUniform && v.spread >= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--jitter spread = ", v.spread, ", must be >= 0 (and < 1 for uniform)"));
  }
  if (v.straggler_stage >= num_stages || v.straggler_stage < -1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--straggler stage ", v.straggler_stage, " is not in [0, ", num_stages, ")"));
  }
  if (!std::isfinite(v.straggler_factor) || v.straggler_factor <= 0 || v.straggler_from_step < 0) {
    return absl::InvalidArgumentError(absl::StrCat("--straggler factor = ", v.straggler_factor,
                                                   " must be > 0 and from step ",
                                                   v.straggler_from_step, " >= 0"));
  }
  return absl::OkStatus();
}

ModelCosts::ModelCosts(StepCosts costs, Variability variability)
    : costs_(std::move(costs)), variability_(variability), rng_(variability.seed) {}

double ModelCosts::BaseTime(const Action& action) const {
  const ChunkCost& cost = costs_.chunks[action.chunk];
  double time = 0;
  switch (action.kind) {
    case ActionKind::kForward:
      time = cost.forward;
      break;
    case ActionKind::kBackwardInput:
      time = cost.backward_input;
      break;
    case ActionKind::kBackwardWeight:
      time = cost.backward_weight;
      break;
    case ActionKind::kBackward:
      time = cost.backward_input + cost.backward_weight;
      break;
    default:
      break;
  }
  return time * StageFactor(action.stage);
}

double ModelCosts::StageFactor(int stage) const {
  double factor = costs_.stage_factor.empty() ? 1 : costs_.stage_factor[stage];
  if (stage == variability_.straggler_stage && step_ >= variability_.straggler_from_step) {
    factor *= variability_.straggler_factor;
  }
  return factor;
}

double ModelCosts::SubStepTime(const SubStepOrder& order) {
  const Action& action = order.step.action;
  const ChunkCost& cost = costs_.chunks[action.chunk];
  if (order.whole || cost.moe_layers < 1) return ComputeTime(action);
  if (IsCommunication(order.step.part)) return cost.all_to_all;
  if (order.step.part == SubStepKind::kRest) return 0;
  double compute = 0, experts = 0;                   // the action's, all layers
  if (action.kind != ActionKind::kBackwardWeight) {  // F, I, B
    const bool forward = action.kind == ActionKind::kForward;
    compute =
        (forward ? cost.forward : cost.backward_input) - 2 * cost.moe_layers * cost.all_to_all;
    experts = forward ? cost.experts_forward : cost.experts_backward_input;
  }
  if (action.kind == ActionKind::kBackwardWeight || action.kind == ActionKind::kBackward) {
    compute += cost.backward_weight;
    experts += cost.experts_backward_weight;
  }
  const double part = order.step.part == SubStepKind::kExperts ? experts : compute - experts;
  return std::max(0.0, part) / cost.moe_layers * StageFactor(action.stage) * Draw();
}

double ModelCosts::Draw() {
  const double s = variability_.spread;
  switch (variability_.jitter) {
    case JitterDistribution::kUniform:
      return std::uniform_real_distribution<double>(1 - s, 1 + s)(rng_);
    case JitterDistribution::kNormal:
      return std::max(0.05, std::normal_distribution<double>(1, s)(rng_));
    case JitterDistribution::kLogNormal:
      return std::lognormal_distribution<double>(-s * s / 2, s)(rng_);
    default:
      return 1;
  }
}

double ModelCosts::ComputeTime(const Action& action) { return BaseTime(action) * Draw(); }

double ModelCosts::TransferTime(const Transfer&) { return costs_.transfer; }

}  // namespace stagehand::runtime::sim
