// HeldOutPass: one process's share of a held-out evaluation when the model's chunks live in
// several processes. Batch by batch and chunk by chunk in model order, it runs the forward
// pass of the chunks this process holds, receiving a chunk's input activation over UCX
// when the previous chunk lives elsewhere and sending its output when the next one does.
// The process holding the last chunk returns the mean loss, bitwise what Evaluate
// (training.h) gives for the whole model in one process. Not a scheduler and not a
// control plane: who runs it when, and where the result goes, is the caller's (the cluster
// coordinator runs it between steps, while no stage computes).
#ifndef STAGEHAND_RUNTIME_TRAIN_HELD_OUT_PASS_H_
#define STAGEHAND_RUNTIME_TRAIN_HELD_OUT_PASS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/data/text_corpus.h"
#include "runtime/train/training.h"
#include "runtime/transport/ucx_transport.h"

namespace stagehand::runtime {

struct HeldOutPassInit {
  int rank = 0;
  std::vector<int> chunk_rank;             // global chunk index -> the rank that holds it
  std::map<int, Chunk*> chunks;            // this rank's chunks by global index (not owned)
  const WindowSampler* sampler = nullptr;  // held-out windows: batch b is Sample(b, 0)
  UcxTransport* transport = nullptr;       // endpoints to every rank holding a neighbour chunk
  int64_t tensor_floats = 0;               // B * T * C: every activation between chunks
  std::function<void(const std::string&)> note;  // what it is doing (heartbeats); may be empty
  const std::atomic<bool>* stop = nullptr;       // set by the caller to give up a wait; may be null
};

// The largest step, batch count and chunk count HeldOutTag can encode.
inline constexpr int64_t kHeldOutMaxStep = (int64_t{1} << 35) - 1;
inline constexpr int kHeldOutMaxBatches = 1 << 16;
inline constexpr int kHeldOutMaxChunks = 1 << 12;

// The UCX tag of the input of chunk `chunk` for batch `batch` of the evaluation after step
// `step`: the top bit set, so it never meets a training transfer's tag (stage << 40 | n).
uint64_t HeldOutTag(int64_t step, int batch, int chunk);

// Runs `batches` held-out batches through this rank's chunks (microbatch slot -1, released
// after each batch). Returns the mean loss on the rank holding the last chunk and nullopt
// elsewhere. InvalidArgument for a malformed init or counts past the tag's range; a UCX
// error names the transfer; Cancelled when `stop` was set while waiting.
absl::StatusOr<std::optional<double>> RunHeldOutPass(const HeldOutPassInit& init, int64_t step,
                                                     int batches);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_TRAIN_HELD_OUT_PASS_H_
