// Token + position embedding (GPT-2's wte/wpe lookup), forward and weight-gradient.
// Not a tokenizer; tokens are already integer ids in [0, V). There is no input-gradient:
// tokens are integers, so the B call does not exist for this op.
#ifndef STAGEHAND_OPS_CPU_ENCODER_H_
#define STAGEHAND_OPS_CPU_ENCODER_H_

#include <cstdint>

namespace stagehand::ops {

// Letters: B batch, T time, C channels, V vocabulary.
// out    (B, T, C) = wte[tokens[b, t]] + wpe[pos[b, t]], pos[b, t] = positions[b, t], or t
//                    when positions is null
// tokens (B, T)    ids in [0, V)
// wte    (V, C), wpe (maxT, C) with T <= maxT, or null: no position embedding (RoPE models)
// positions (B, T) or null: each in [0, maxT) (packed documents restart them, as Megatron's
//                  --reset_position_ids does)
template <typename Real>
void EncoderForward(Real* out, const int32_t* tokens, const Real* wte, const Real* wpe, int B,
                    int T, int C, const int32_t* positions = nullptr);

// W: dwte[tokens[b, t]] += dout[b, t]; dwpe[pos[b, t]] += dout[b, t]  (accumulates).
// Deterministic: the order of accumulation does not depend on threads.
template <typename Real>
void EncoderBackwardWeights(Real* dwte, Real* dwpe, const Real* dout, const int32_t* tokens, int B,
                            int T, int C, const int32_t* positions = nullptr);

}  // namespace stagehand::ops

#endif  // STAGEHAND_OPS_CPU_ENCODER_H_
