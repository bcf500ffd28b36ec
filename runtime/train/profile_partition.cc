// Profile-guided cuts: per-chunk medians from a trace, shared among layers by FLOPs, then the
// same min-max contiguous cut as --partition=balanced.
#include "runtime/train/profile_partition.h"

#include <algorithm>
#include <map>
#include <numeric>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "models/partition.h"
#include "runtime/trace/chrome_json.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {
namespace {

constexpr char kPrefix[] = "profile:";

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::vector<std::string> Shares(const std::vector<double>& costs, const std::vector<int>& sizes) {
  const double total = std::accumulate(costs.begin(), costs.end(), 0.0);
  std::vector<std::string> shares;
  size_t layer = 0;
  for (int n : sizes) {
    double sum = 0.0;
    for (int i = 0; i < n && layer < costs.size(); ++i) sum += costs[layer++];
    shares.push_back(absl::StrFormat("%.1f%%", total > 0 ? 100.0 * sum / total : 0.0));
  }
  return shares;
}

}  // namespace

bool IsProfilePartition(const std::string& spec) { return absl::StartsWith(spec, kPrefix); }

absl::StatusOr<std::vector<double>> ChunkMedianMicros(const trace::Trace& trace) {
  int64_t first_step = -1, last_step = -1;
  for (const trace::Span& s : trace.spans) {
    first_step = first_step < 0 ? s.step : std::min(first_step, s.step);
    last_step = std::max(last_step, s.step);
  }
  const bool skip_first = last_step > first_step;
  // (chunk, kind) -> durations.
  std::map<std::pair<int, ActionKind>, std::vector<double>> durations;
  for (const trace::Span& s : trace.spans) {
    if (s.lane != trace::Lane::kCompute || (skip_first && s.step == first_step)) continue;
    if (s.kind != ActionKind::kForward && s.kind != ActionKind::kBackwardInput &&
        s.kind != ActionKind::kBackwardWeight && s.kind != ActionKind::kBackward) {
      continue;
    }
    durations[{s.chunk, s.kind}].push_back(s.duration_us());
  }
  std::vector<double> chunk_us(std::max(trace.num_chunks, 0), 0.0);
  for (const auto& [key, values] : durations) {
    if (key.first < 0 || key.first >= trace.num_chunks) {
      return absl::InvalidArgumentError(absl::StrCat("the trace has a span of chunk ", key.first,
                                                     " of ", trace.num_chunks, " chunks"));
    }
    chunk_us[key.first] += Median(values);
  }
  for (int c = 0; c < trace.num_chunks; ++c) {
    if (durations.count({c, ActionKind::kForward}) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("the trace has no F span of chunk ", c, " (a trace of a training run?)"));
    }
  }
  if (chunk_us.empty()) return absl::InvalidArgumentError("the trace has no chunks");
  return chunk_us;
}

absl::StatusOr<ProfileCut> ProfileCutFromTrace(const trace::Trace& trace,
                                               const std::vector<int>& traced_cut,
                                               const models::GptConfig& config, int num_chunks,
                                               int seq_len) {
  ProfileCut cut;
  cut.traced_cut = traced_cut;
  ASSIGN_OR_RETURN(cut.chunk_us, ChunkMedianMicros(trace));
  const int num_layers = static_cast<int>(config.layers.size());
  if (cut.chunk_us.size() != traced_cut.size() ||
      std::accumulate(traced_cut.begin(), traced_cut.end(), 0) != num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("the trace has ", cut.chunk_us.size(), " chunks, its cut ",
                     absl::StrJoin(traced_cut, ","), " does not fit them and the model's ",
                     num_layers, " layers (name the traced run's cut: profile:TRACE@COUNTS)"));
  }
  const std::vector<double> flops = models::LayerCosts(config, seq_len);
  int layer = 0;
  for (size_t c = 0; c < traced_cut.size(); ++c) {
    double sum = 0.0;
    for (int i = 0; i < traced_cut[c]; ++i) sum += flops[layer + i];
    for (int i = 0; i < traced_cut[c]; ++i, ++layer) {
      cut.layer_us.push_back(cut.chunk_us[c] * flops[layer] / sum);
    }
  }
  if (num_chunks <= 0 || num_layers < num_chunks) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot cut ", num_layers, " layers into ", num_chunks, " chunks"));
  }
  cut.layers_per_chunk = models::BalancedCut(cut.layer_us, num_chunks);
  return cut;
}

absl::StatusOr<ProfileCut> ProfilePartition(const std::string& spec,
                                            const models::GptConfig& config, int num_chunks,
                                            int seq_len) {
  std::string path = spec.substr(sizeof(kPrefix) - 1);
  std::string counts;
  if (const size_t at = path.rfind('@'); at != std::string::npos) {
    counts = path.substr(at + 1);
    path.resize(at);
  }
  if (path.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--partition=", spec, ": name a trace (profile:TRACE or profile:TRACE@2,2)"));
  }
  absl::StatusOr<trace::Trace> trace = trace::ReadChromeJsonFile(path);
  if (!trace.ok()) {
    return absl::Status(trace.status().code(),
                        absl::StrCat("--partition=", spec, ": ", trace.status().message()));
  }
  absl::StatusOr<std::vector<int>> traced =
      models::ResolvePartition(counts, config, trace->num_chunks, seq_len);
  if (!traced.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--partition=", spec, ": the traced run's cut: ", traced.status().message()));
  }
  absl::StatusOr<ProfileCut> cut =
      ProfileCutFromTrace(*trace, *traced, config, num_chunks, seq_len);
  if (!cut.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--partition=", spec, ": ", cut.status().message()));
  }
  return cut;
}

std::string DescribeProfileCut(const std::string& spec, const ProfileCut& cut) {
  return absl::StrCat(spec, ": layers ", absl::StrJoin(cut.layers_per_chunk, ","),
                      ", measured shares ",
                      absl::StrJoin(Shares(cut.layer_us, cut.layers_per_chunk), " "),
                      " (traced cut ", absl::StrJoin(cut.traced_cut, ","), ": ",
                      absl::StrJoin(Shares(cut.layer_us, cut.traced_cut), " "), ")");
}

}  // namespace stagehand::runtime
