// Tokens per expert of a run's MoE layers: each step's router counts taken from the chunks,
// summed over the run, with the balance measures the summary prints (max/min ratio,
// coefficient of variation, dropped share). Not the router (ops/cpu/moe_router.h) and not a
// logger: callers print the lines.
#ifndef STAGEHAND_RUNTIME_MOE_STATS_H_
#define STAGEHAND_RUNTIME_MOE_STATS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "models/gpt_chunk.h"

namespace stagehand::runtime {

// Standard deviation over mean of the counts (0 when all are equal; 0 for no tokens).
double CoefficientOfVariation(const std::vector<int64_t>& counts);
// Largest over smallest count; infinity when an expert got no token, 0 for no tokens.
double MaxMinRatio(const std::vector<int64_t>& counts);

class MoeTokenCounts {
 public:
  // Takes (and so resets) the stats every chunk gathered since the last call, i.e. the
  // microbatches of one step, and adds them to the run's totals. Call between steps only.
  void AddStep(const std::vector<models::GptChunk<float>*>& chunks);
  // The last step's stats and the run's, by global layer index.
  const std::map<int, models::MoeLayerStats>& last_step() const { return last_step_; }
  const std::map<int, models::MoeLayerStats>& totals() const { return totals_; }
  bool empty() const { return totals_.empty(); }
  // One line per MoE layer over the run: "tokens per expert: layer 1 [812 790 ...] max/min 1.21
  // cv 0.080 dropped 0.4%, per microbatch: balance loss 1.0213 aux loss 0.0102" (balance: the
  // unweighted load-balancing loss, 1 when even; aux: what joined the objective); none
  // without MoE layers.
  std::vector<std::string> SummaryLines() const;

 private:
  std::map<int, models::MoeLayerStats> last_step_;
  std::map<int, models::MoeLayerStats> totals_;
};

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_MOE_STATS_H_
