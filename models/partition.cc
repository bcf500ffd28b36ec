#include "models/partition.h"

#include <algorithm>
#include <numeric>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace stagehand::models {
namespace {

// Greedy cut of `costs` into chunks of cost at most `limit`: the fewest chunks, or -1 when a
// single layer is over it. Fills `sizes`.
int GreedyCut(const std::vector<double>& costs, double limit, std::vector<int>* sizes) {
  sizes->clear();
  double sum = 0.0;
  for (double c : costs) {
    if (c > limit) return -1;
    if (sizes->empty() || sum + c > limit) {
      sizes->push_back(0);
      sum = 0.0;
    }
    ++sizes->back();
    sum += c;
  }
  return static_cast<int>(sizes->size());
}

}  // namespace

// Binary search on the largest chunk cost (greedy is optimal for a given limit), then chunks
// split until there are enough (splitting never raises the maximum).
std::vector<int> BalancedCut(const std::vector<double>& costs, int num_chunks) {
  double lo = *std::max_element(costs.begin(), costs.end());
  double hi = std::accumulate(costs.begin(), costs.end(), 0.0);
  std::vector<int> sizes;
  for (int i = 0; i < 100 && hi - lo > 1e-12 * hi; ++i) {
    const double mid = 0.5 * (lo + hi);
    if (GreedyCut(costs, mid, &sizes) <= num_chunks && GreedyCut(costs, mid, &sizes) > 0) {
      hi = mid;
    } else {
      lo = mid;
    }
  }
  GreedyCut(costs, hi, &sizes);
  while (static_cast<int>(sizes.size()) < num_chunks) {
    auto widest = std::max_element(sizes.begin(), sizes.end());
    const int half = *widest / 2;
    *widest -= half;
    sizes.insert(widest + 1, half);
  }
  return sizes;
}

namespace {

absl::StatusOr<std::vector<int>> ExplicitCut(const std::string& spec, int num_layers,
                                             int num_chunks) {
  std::vector<int> sizes;
  for (absl::string_view part : absl::StrSplit(spec, ',')) {
    int n = 0;
    if (!absl::SimpleAtoi(part, &n) || n <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--partition=", spec, ": '", part,
          "' is not a positive layer count (give equal, balanced, profile:TRACE or counts like "
          "7,5,5,7)"));
    }
    sizes.push_back(n);
  }
  if (static_cast<int>(sizes.size()) != num_chunks) {
    return absl::InvalidArgumentError(absl::StrCat("--partition=", spec, " gives ", sizes.size(),
                                                   " chunks; the plan has ", num_chunks));
  }
  const int total = std::accumulate(sizes.begin(), sizes.end(), 0);
  if (total != num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("--partition=", spec, " adds up to ", total,
                                                   " layers; the model has ", num_layers));
  }
  return sizes;
}

}  // namespace

std::vector<double> LayerCosts(const GptConfig& c, int seq_len) {
  const double C = c.d_model, T = seq_len;
  std::vector<double> costs;
  for (const LayerSpec& l : c.layers) {
    double flops = 0.0;
    if (l.attention == AttentionKind::kCausal) {
      // qkv and output projections, then q k^T and att v over the causal half.
      flops += 2 * C * c.QkvWidth(l) + 2 * C * C + 2 * T * C + 10 * C;
    } else if (l.attention == AttentionKind::kLinear) {
      flops += 2 * C * C + 10 * C;
    }
    if (l.mlp == MlpKind::kDense) {
      flops += 2 * C * c.FcWidth(l) + 2.0 * c.FfnHidden(l) * C + 10 * C + 8.0 * c.FfnHidden(l);
    } else if (l.mlp == MlpKind::kLinear) {
      flops += 2 * C * C + 10 * C;
    } else if (l.mlp == MlpKind::kMoe) {
      // Router, then top_k experts per token (and the shared expert, if any).
      const auto mlp = [&](double ffn) {
        return 2 * C * c.FcWidthOf(static_cast<int>(ffn)) + 2.0 * ffn * C + 8.0 * ffn;
      };
      flops += 2 * C * l.moe.num_experts + 10 * C + l.moe.top_k * mlp(c.ExpertFfn(l));
      if (l.moe.shared_expert_ffn > 0) flops += mlp(l.moe.shared_expert_ffn);
    }
    costs.push_back(flops + 2 * C);  // the residual adds
  }
  costs.front() += 2 * C;                                              // embedding lookup and add
  costs.back() += 10 * C + 2 * C * c.vocab_size + 5.0 * c.vocab_size;  // norm, head, loss
  return costs;
}

absl::StatusOr<std::vector<int>> ResolvePartition(const std::string& spec, const GptConfig& config,
                                                  int num_chunks, int seq_len) {
  const int num_layers = static_cast<int>(config.layers.size());
  if (num_chunks <= 0 || num_layers < num_chunks) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot cut ", num_layers, " layers into ", num_chunks,
        " chunks: every chunk needs at least one layer (use more layers or fewer stages/chunks)"));
  }
  if (spec.empty() || spec == "equal") {
    std::vector<int> sizes(num_chunks, num_layers / num_chunks);
    for (int i = 0; i < num_layers % num_chunks; ++i) ++sizes[i];
    return sizes;
  }
  if (spec == "balanced") return BalancedCut(LayerCosts(config, seq_len), num_chunks);
  return ExplicitCut(spec, num_layers, num_chunks);
}

std::string DescribePartition(const std::string& spec, const std::vector<int>& sizes,
                              const GptConfig& config, int seq_len) {
  const std::vector<double> costs = LayerCosts(config, seq_len);
  const double total = std::accumulate(costs.begin(), costs.end(), 0.0);
  std::vector<std::string> shares;
  int layer = 0;
  for (int n : sizes) {
    double sum = 0.0;
    for (int i = 0; i < n; ++i) sum += costs[layer++];
    shares.push_back(absl::StrFormat("%.1f%%", 100.0 * sum / total));
  }
  return absl::StrCat(spec.empty() ? "equal" : spec, ": layers ", absl::StrJoin(sizes, ","),
                      ", estimated shares ", absl::StrJoin(shares, " "));
}

}  // namespace stagehand::models
