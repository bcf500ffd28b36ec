// MoeTokenCounts: sums of the chunks' per-layer router stats and their one-line summaries.
#include "runtime/moe_stats.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace stagehand::runtime {

double CoefficientOfVariation(const std::vector<int64_t>& counts) {
  if (counts.empty()) return 0.0;
  double sum = 0.0;
  for (int64_t n : counts) sum += static_cast<double>(n);
  const double mean = sum / counts.size();
  if (mean == 0.0) return 0.0;
  double squares = 0.0;
  for (int64_t n : counts) squares += (n - mean) * (n - mean);
  return std::sqrt(squares / counts.size()) / mean;
}

double MaxMinRatio(const std::vector<int64_t>& counts) {
  if (counts.empty()) return 0.0;
  const auto [low, high] = std::minmax_element(counts.begin(), counts.end());
  if (*high == 0) return 0.0;
  if (*low == 0) return std::numeric_limits<double>::infinity();
  return static_cast<double>(*high) / static_cast<double>(*low);
}

void MoeTokenCounts::AddStep(const std::vector<models::GptChunk<float>*>& chunks) {
  last_step_.clear();
  for (models::GptChunk<float>* chunk : chunks) {
    for (auto& [layer, stats] : chunk->TakeMoeStats()) last_step_[layer] = stats;
  }
  for (const auto& [layer, stats] : last_step_) {
    models::MoeLayerStats& total = totals_[layer];
    total.tokens_per_expert.resize(stats.tokens_per_expert.size(), 0);
    for (size_t e = 0; e < stats.tokens_per_expert.size(); ++e) {
      total.tokens_per_expert[e] += stats.tokens_per_expert[e];
    }
    total.dropped += stats.dropped;
    total.aux_loss += stats.aux_loss;
    total.balance += stats.balance;
    total.microbatches += stats.microbatches;
  }
}

std::vector<std::string> MoeTokenCounts::SummaryLines() const {
  std::vector<std::string> lines;
  for (const auto& [layer, stats] : totals_) {
    int64_t choices = 0;
    for (int64_t n : stats.tokens_per_expert) choices += n;
    lines.push_back(absl::StrFormat(
        "tokens per expert: layer %d [%s] max/min %.2f cv %.3f dropped %.1f%%, per microbatch: "
        "balance loss %.4f aux loss %.4g",
        layer, absl::StrJoin(stats.tokens_per_expert, " "), MaxMinRatio(stats.tokens_per_expert),
        CoefficientOfVariation(stats.tokens_per_expert),
        choices > 0 ? 100.0 * stats.dropped / choices : 0.0,
        stats.microbatches > 0 ? stats.balance / stats.microbatches : 0.0,
        stats.microbatches > 0 ? stats.aux_loss / stats.microbatches : 0.0));
  }
  return lines;
}

}  // namespace stagehand::runtime
