// The optimizer step's pieces, written once for the sequential reference and every stage
// of a pipeline: tied-gradient gather, sum and scatter, per-tensor squared norms, the clip
// scale and the AdamW update of a chunk. Not a schedule: who calls these when, and how
// the pieces travel between stages, is the caller's (training.cc, actors/step_driver.cc).
#ifndef STAGEHAND_RUNTIME_TRAIN_OPTIMIZER_H_
#define STAGEHAND_RUNTIME_TRAIN_OPTIMIZER_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "models/gpt_chunk.h"
#include "ops/cpu/adamw.h"

namespace stagehand::runtime {

using Chunk = models::GptChunk<float>;

// AdamW moments of one chunk's parameters.
struct OptimizerState {
  std::vector<float> m, v;
};

// The learning rate of step s (1-based) for peak rate lr: lr * s / warmup_steps during the
// warm-up, then a cosine from lr down to lr * min_lr_fraction at total_steps (held after).
// total_steps = 0 keeps lr after the warm-up. total_steps is the run's whole length, never
// where a run stopped, so an interrupted and resumed run follows the same rates.
struct LearningRateSchedule {
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;
  double min_lr_fraction = 0.1;
};

struct OptimizerConfig {
  ops::AdamWOptions adamw;  // weight_decay applies to matrices only; learning_rate is the peak
  double grad_clip = 1.0;   // global-norm clip; <= 0 disables
  LearningRateSchedule schedule;
  // Not owned, may be null: where the AdamW moments live, indexed by global chunk index, for
  // callers that save and restore them (checkpoints). Stage works size it to the number of
  // chunks when they are built, before any step; each then touches only its own chunks'
  // entries. Null: each stage work keeps its own moments.
  std::vector<OptimizerState>* states = nullptr;
};

// The learning rate `config.schedule` gives step `step`.
double LearningRateAt(const OptimizerConfig& config, int64_t step);

// A tensor handed between stages or summed across them: an activation (after F), a
// gradient (after I / B), a tied weight's gradient.
using Payload = std::vector<float>;
// Gradients of tied tensors by holder: chunk -> tensor name -> gradient.
using TiedGradientMap = std::map<int, std::map<std::string, Payload>>;

// Folds each chunk's own tied copies (FoldTiedGradients) and returns the gradients of the
// tensors tied across chunks (the embedding "wte", held by the first and last chunk when
// they differ and the head is tied; none for an untied head) that `chunks` (global chunk index ->
// chunk) hold. `num_chunks` is the model's chunk count.
TiedGradientMap GatherTiedGradients(const std::map<int, Chunk*>& chunks, int num_chunks);
// The one tied-gradient sum: for each tensor name, the elementwise float sum of its
// gradients over every holder in ascending chunk order (so the result does not depend on
// which stage or process holds which chunk). `parts` may come from several stages.
std::map<std::string, Payload> SumTiedGradients(const std::vector<const TiedGradientMap*>& parts);
// What each holder in `holders` (from GatherTiedGradients) gets back: every tensor it
// holds, set to that tensor's sum.
TiedGradientMap SumsForHolders(const TiedGradientMap& holders,
                               const std::map<std::string, Payload>& sums);
// Sets the gradients of `chunks` from `sums` (chunk -> name -> gradient, as SumsForHolders
// gives); chunks and names not in `sums` are left alone.
void ScatterTiedGradients(const std::map<int, Chunk*>& chunks, const TiedGradientMap& sums);
// Squared norms of the gradients per chunk, tensor by tensor in declaration order, tied
// copies skipped (each tied weight counted once): chunk -> values.
std::map<int, std::vector<double>> SquaredGradientNorms(const std::map<int, Chunk*>& chunks);
// Combines per-chunk squared norms (chunk order, then tensor order) into the clip scale.
double ClipScaleFromSquaredNorms(const std::map<int, std::vector<double>>& norms, double grad_clip,
                                 double* global_norm);
// AdamW on one chunk's parameters, tensor by tensor (weight decay on matrices only), at the
// learning rate `config` gives `step`; `state` is sized on first use; gradients are zeroed.
void ApplyAdamW(models::ParameterSet<float>& params, OptimizerState& state,
                const OptimizerConfig& config, int step, double clip_scale);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_TRAIN_OPTIMIZER_H_
