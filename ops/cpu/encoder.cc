// Token + position embedding on the CPU (llm.c's encoder_forward / encoder_backward).
// Not a sparse-gradient update: dwte is a dense (V, C) buffer that rows are added into.
#include "ops/cpu/encoder.h"

#include <algorithm>
#include <cstdint>

#include "ops/cpu/parallel.h"

namespace stagehand::ops {
namespace {

// Letters: B batch, T time, C channels, V vocabulary.
// The backward gives each task a block of channels, so every element of dwte and dwpe is
// summed by one thread, in (b, t) order, whatever the number of threads.
constexpr int kChannelBlock = 64;

}  // namespace

template <typename Real>
void EncoderForward(Real* out, const int32_t* tokens, const Real* wte, const Real* wpe, int B,
                    int T, int C, const int32_t* positions) {
  const int64_t rows = static_cast<int64_t>(B) * T;
  const int64_t work = rows * C;
#pragma omp parallel for schedule(static) if (work >= internal::kMinParallelWork)
  for (int64_t bt = 0; bt < rows; ++bt) {
    const Real* wte_row = wte + static_cast<int64_t>(tokens[bt]) * C;  // (C)
    Real* out_row = out + bt * C;                                      // (C)
    if (wpe == nullptr) {  // positions come from RoPE inside attention
      for (int c = 0; c < C; ++c) out_row[c] = wte_row[c];
      continue;
    }
    const Real* wpe_row = wpe + (positions != nullptr ? positions[bt] : bt % T) * C;  // (C)
    for (int c = 0; c < C; ++c) out_row[c] = wte_row[c] + wpe_row[c];
  }
}

template <typename Real>
void EncoderBackwardWeights(Real* dwte, Real* dwpe, const Real* dout, const int32_t* tokens, int B,
                            int T, int C, const int32_t* positions) {
  const int num_blocks = (C + kChannelBlock - 1) / kChannelBlock;
  const int64_t work = int64_t{B} * T * C;
#pragma omp parallel for schedule(static) if (work >= internal::kMinParallelWork)
  for (int block = 0; block < num_blocks; ++block) {
    const int c_begin = block * kChannelBlock;
    const int c_end = std::min(C, c_begin + kChannelBlock);
    for (int b = 0; b < B; ++b) {
      for (int t = 0; t < T; ++t) {
        const int64_t bt = static_cast<int64_t>(b) * T + t;
        const Real* dout_row = dout + bt * C;                          // (C)
        Real* dwte_row = dwte + static_cast<int64_t>(tokens[bt]) * C;  // (C)
        if (dwpe == nullptr) {
          for (int c = c_begin; c < c_end; ++c) dwte_row[c] += dout_row[c];
          continue;
        }
        const int64_t pos = positions != nullptr ? positions[bt] : t;
        Real* dwpe_row = dwpe + pos * C;  // (C)
        for (int c = c_begin; c < c_end; ++c) {
          dwte_row[c] += dout_row[c];
          dwpe_row[c] += dout_row[c];
        }
      }
    }
  }
}

template void EncoderForward<float>(float*, const int32_t*, const float*, const float*, int, int,
                                    int, const int32_t*);
template void EncoderForward<double>(double*, const int32_t*, const double*, const double*, int,
                                     int, int, const int32_t*);
template void EncoderBackwardWeights<float>(float*, float*, const float*, const int32_t*, int, int,
                                            int, const int32_t*);
template void EncoderBackwardWeights<double>(double*, double*, const double*, const int32_t*, int,
                                             int, int, const int32_t*);

}  // namespace stagehand::ops
