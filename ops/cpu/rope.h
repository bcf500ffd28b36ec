// Rotary position embedding (RoPE, as Hugging Face Llama applies it: "rotate_half", pairs
// (i, i + hs/2) of each head rotated by position * base^(-2i/hs)). Applied in place to the
// query and key heads of a packed qkv tensor, after the qkv projection. Linear and without
// weights: the input-gradient rotates the gradient back by the same angles (the transpose).
#ifndef STAGEHAND_OPS_CPU_ROPE_H_
#define STAGEHAND_OPS_CPU_ROPE_H_

#include <cstdint>

namespace stagehand::ops {

// Letters: N rows (B*T tokens); each row has `stride` values, of which `num_heads` heads of
// `hs` values (hs even) start at column `offset`. positions (N): the position of each token
// (restarting per packed document when positions are reset).
struct RopeShape {
  int64_t N = 1;
  int stride = 1, offset = 0, num_heads = 1, hs = 2;
  double base = 10000.0;
};

// x = rotate(x, +angle), in place.
template <typename Real>
void RopeForward(Real* x, const int32_t* positions, const RopeShape& shape);

// I, in place: dx = rotate(dx, -angle) (the gradient of the forward's input).
template <typename Real>
void RopeBackwardInput(Real* dx, const int32_t* positions, const RopeShape& shape);

}  // namespace stagehand::ops

#endif  // STAGEHAND_OPS_CPU_ROPE_H_
