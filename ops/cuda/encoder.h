// Token + position embedding (GPT-2's wte/wpe lookup) on the GPU: forward and weight-gradient,
// as ops/cpu/encoder.h. No input-gradient: tokens are integers. Not a tokenizer.
#ifndef STAGEHAND_OPS_CUDA_ENCODER_H_
#define STAGEHAND_OPS_CUDA_ENCODER_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "ops/cuda/launch.h"

namespace stagehand::ops::cuda {

// Letters: B batch, T time, C channels, V vocabulary. tokens are on the device.
// out (B, T, C) = wte[tokens[b, t]] + wpe[t]; wte (V, C), wpe (maxT, C) bf16, T <= maxT.
absl::Status EncoderForward(bf16* out, const int32_t* tokens, const bf16* wte, const bf16* wpe,
                            int B, int T, int C, cudaStream_t stream);

// W: dwte[tokens[b, t]] += dout[b, t]; dwpe[t] += dout[b, t]; fp32, accumulating.
// Deterministic: every element of dwte sums its positions in order (b, t). Each thread owns a
// channel and walks all B*T positions, so this is slow for large B*T (a bucketed version is
// the next step).
absl::Status EncoderBackwardWeights(float* dwte, float* dwpe, const bf16* dout,
                                    const int32_t* tokens, int B, int T, int C,
                                    cudaStream_t stream);
// W as above, bit for bit, with the positions grouped by token (token_groups.h, uploaded):
// `order` (B*T), `starts` (groups + 1) and `ids` (groups) on the device. One thread per (group,
// channel) adds its group's positions in order, so it scales with the distinct tokens instead
// of walking every position per channel.
absl::Status EncoderBackwardWeightsGrouped(float* dwte, float* dwpe, const bf16* dout,
                                           const int32_t* order, const int32_t* starts,
                                           const int32_t* ids, int groups, int B, int T, int C,
                                           cudaStream_t stream);

}  // namespace stagehand::ops::cuda

#endif  // STAGEHAND_OPS_CUDA_ENCODER_H_
