// The pieces of a training step shared by every execution mode: building the chunks, the
// optimizer step over all chunks (tied-gradient sum, global-norm clip, AdamW), the
// sequential reference step and evaluation. Not a scheduler: pipelined execution is in
// actors/, driven by runtime/ planners.
#ifndef STAGEHAND_RUNTIME_TRAIN_TRAINING_H_
#define STAGEHAND_RUNTIME_TRAIN_TRAINING_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "models/gpt_chunk.h"
#include "models/gpt_config.h"
#include "ops/cpu/adamw.h"
#include "runtime/data/text_corpus.h"
#include "runtime/io/safetensors.h"
#include "runtime/train/optimizer.h"

namespace stagehand::runtime {

// One microbatch's data, as every chunk of the model reads it (a deterministic function of
// (sampler, step, microbatch), so each stage and each process draws it for itself): tokens,
// targets and, when the sampler packs documents, their starts and loss mask. Sized for
// B x seq_len; a Draw fills B x length() of it (the sampler's T_m of the microbatch).
class MicrobatchData {
 public:
  explicit MicrobatchData(const models::ChunkOptions& options);
  void Draw(const WindowSampler& sampler, int64_t step, int microbatch);
  int length() const { return length_; }  // T_m of the last Draw: rows of B x length()
  const int32_t* tokens() const { return tokens_.data(); }
  const int32_t* targets() const { return targets_.data(); }
  // The packed documents of the last Draw, or null when the sampler has none.
  const models::PackedDocuments* documents() const { return packed_ ? &documents_ : nullptr; }

 private:
  std::vector<int32_t> tokens_, targets_, doc_start_;  // (B, T) each
  std::vector<uint8_t> loss_mask_;                     // (B, T)
  models::PackedDocuments documents_;
  bool packed_ = false;
  int length_ = 0;
};

// The cut of the model into `num_chunks` consecutive chunks that --partition=`partition`
// asks for (models/partition.h: "" equal counts, "balanced", or explicit counts;
// profile_partition.h: "profile:TRACE[@COUNTS]", from a traced run's measured times).
absl::StatusOr<std::vector<models::ChunkSpec>> CutModel(const models::GptConfig& config,
                                                        int num_chunks,
                                                        const std::string& partition, int seq_len);

// The model cut into `num_chunks` consecutive chunks (CutModel).
absl::StatusOr<std::vector<std::unique_ptr<Chunk>>> BuildChunks(const models::GptConfig& config,
                                                                int num_chunks,
                                                                const models::ChunkOptions& options,
                                                                const std::string& partition = "");

// The optimizer step over all chunks of the model, in chunk order: sums the gradients of
// tied copies (wte in the first and last chunk) into both, computes the global gradient
// norm (each tied weight counted once), clips, applies AdamW, zeroes the gradients.
// `states` is resized on first use. Returns the global norm before clipping.
double OptimizerStep(const std::vector<Chunk*>& chunks, std::vector<OptimizerState>& states,
                     const OptimizerConfig& config, int step);

// One training step run sequentially: for each microbatch, forward through every chunk
// and backward through every chunk. Returns the step's mean loss. Gradients accumulate;
// call OptimizerStep after.
absl::StatusOr<double> SequentialForwardBackward(const std::vector<Chunk*>& chunks,
                                                 const WindowSampler& sampler, int64_t step,
                                                 int num_microbatches);

// Mean loss over `num_batches` windows of `sampler` (forward only).
absl::StatusOr<double> Evaluate(const std::vector<Chunk*>& chunks, const WindowSampler& sampler,
                                int num_batches);

// Every parameter by name (tied copies once), float32, for safetensors.
std::vector<NamedTensor> CollectParameters(const std::vector<Chunk*>& chunks);

// Sets every parameter (tied copies included) from the tensor of its name. InvalidArgument
// naming the tensor when one is missing, has another shape, or matches no parameter.
absl::Status AssignParameters(const std::vector<Chunk*>& chunks,
                              const std::map<std::string, NamedTensor>& tensors);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_TRAIN_TRAINING_H_
