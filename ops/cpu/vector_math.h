// Branch-free float exp and tanh for the CPU ops' elementwise loops: plain arithmetic that
// GCC vectorises (libm's expf / tanhf are scalar calls), so a loop over them runs at SIMD
// width. Internal to ops/cpu; not a libm replacement: float only, accurate to a few ulp,
// and double callers keep std::exp / std::tanh through the Real overloads below.
#ifndef STAGEHAND_OPS_CPU_VECTOR_MATH_H_
#define STAGEHAND_OPS_CPU_VECTOR_MATH_H_

#include <cmath>
#include <cstdint>

namespace stagehand::ops::internal {

// e^x for float x, within about 2 ulp of the exact value on [-87.3, 88]; 0 below -87.3 (where
// e^x is subnormal), e^88 above 88. Cephes' expf: x = n ln2 + r with |r| <= ln2 / 2 (ln2
// split in two for an exact reduction), a degree-7 polynomial for e^r, and 2^n built in the
// exponent bits. Every step is a plain float operation, so the result does not depend on
// whether the compiler vectorises the loop around it.
inline float ExpFloat(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2High = 0.693359375f;
  constexpr float kLn2Low = -2.12194440e-4f;
  const bool underflow = x < -87.3f;
  x = x < -87.3f ? -87.3f : (x > 88.0f ? 88.0f : x);
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float n = (x * kLog2e + kRound) - kRound;
  float r = x - n * kLn2High;
  r = r - n * kLn2Low;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n, n in [-126, 127]
  return underflow ? 0.0f : p * __builtin_bit_cast(float, bits);
}

// tanh(x) for float x, within a few ulp: Eigen's rational approximation (odd degree-13 over
// even degree-6 polynomial) on x clamped to +-7.9053 (where tanh rounds to +-1), and x itself
// for |x| < 4e-4.
inline float TanhFloat(float x) {
  constexpr float kClamp = 7.90531110763549805f;
  constexpr float kTiny = 0.0004f;
  const bool tiny = std::fabs(x) < kTiny;
  const float c = x < -kClamp ? -kClamp : (x > kClamp ? kClamp : x);
  const float c2 = c * c;
  float p = -2.76076847742355e-16f;
  p = p * c2 + 2.00018790482477e-13f;
  p = p * c2 + -8.60467152213735e-11f;
  p = p * c2 + 5.12229709037114e-08f;
  p = p * c2 + 1.48572235717979e-05f;
  p = p * c2 + 6.37261928875436e-04f;
  p = p * c2 + 4.89352455891786e-03f;
  p = p * c;
  float q = 1.19825839466702e-06f;
  q = q * c2 + 1.18534705686654e-04f;
  q = q * c2 + 2.26843463243900e-03f;
  q = q * c2 + 4.89352518554385e-03f;
  return tiny ? x : p / q;
}

// Real overloads: float goes through the vectorisable forms, double through libm.
inline float Exp(float x) { return ExpFloat(x); }
inline double Exp(double x) { return std::exp(x); }
inline float Tanh(float x) { return TanhFloat(x); }
inline double Tanh(double x) { return std::tanh(x); }

}  // namespace stagehand::ops::internal

#endif  // STAGEHAND_OPS_CPU_VECTOR_MATH_H_
