// --partition=profile:TRACE[@COUNTS]: a balanced cut from a real run's trace instead of FLOP
// estimates. The trace gives each chunk's measured compute time per microbatch (medians); a
// chunk's time is shared among its layers by their FLOP estimates (models/partition.h), since
// a chunk's layers run inside one span and per-layer times are not in the trace.
// Not a profiler: it reads a trace that `--trace=FILE` wrote; it runs nothing.
#ifndef STAGEHAND_RUNTIME_TRAIN_PROFILE_PARTITION_H_
#define STAGEHAND_RUNTIME_TRAIN_PROFILE_PARTITION_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "models/gpt_config.h"
#include "runtime/trace/trace.h"

namespace stagehand::runtime {

// True for "profile:..." partition specs.
bool IsProfilePartition(const std::string& spec);

struct ProfileCut {
  std::vector<int> traced_cut;        // layers per chunk of the traced run
  std::vector<double> chunk_us;       // per traced chunk: sum over F, I, W, B of the median span
  std::vector<double> layer_us;       // per layer: its chunk's time shared by FLOPs
  std::vector<int> layers_per_chunk;  // the new cut: smallest largest measured chunk time
};

// Per traced chunk c, sum over the kinds F, I, W, B of the median duration of c's compute
// spans of that kind (steps after the first when the trace holds more than one: the first
// warms up). InvalidArgument naming the chunk when one has no F span.
absl::StatusOr<std::vector<double>> ChunkMedianMicros(const trace::Trace& trace);

// The cut of `config` into `num_chunks` chunks from `trace`, recorded with `traced_cut`
// (layers per chunk; must have one entry per traced chunk and add up to the layers).
absl::StatusOr<ProfileCut> ProfileCutFromTrace(const trace::Trace& trace,
                                               const std::vector<int>& traced_cut,
                                               const models::GptConfig& config, int num_chunks,
                                               int seq_len);

// "profile:TRACE" (the traced run used the equal-count cut of its chunks) or
// "profile:TRACE@2,2,1,1" (its explicit cut): reads the trace (errors name the flag and the
// file) and cuts.
absl::StatusOr<ProfileCut> ProfilePartition(const std::string& spec,
                                            const models::GptConfig& config, int num_chunks,
                                            int seq_len);

// "profile:t.json: layers 1,2,2,1, measured shares 24.1% 26.0% 25.3% 24.6% (traced cut
// 2,2,1,1: 31.0% 33.2% 19.0% 16.8%)".
std::string DescribeProfileCut(const std::string& spec, const ProfileCut& cut);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_TRAIN_PROFILE_PARTITION_H_
