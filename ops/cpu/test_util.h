// Helpers shared by the CPU op tests: seeded random tensors, central finite differences in
// double, error measures and a thread-count scope. Not a test framework of its own.
#ifndef STAGEHAND_OPS_CPU_TEST_UTIL_H_
#define STAGEHAND_OPS_CPU_TEST_UTIL_H_

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <vector>

namespace stagehand::ops::testing {

// n values uniform in [lo, hi), the same for the same seed.
inline std::vector<double> RandomVector(int64_t n, uint64_t seed, double lo = -1.0,
                                        double hi = 1.0) {
  std::mt19937_64 generator(seed);
  std::uniform_real_distribution<double> distribution(lo, hi);
  std::vector<double> values(n);
  for (double& value : values) value = distribution(generator);
  return values;
}

// n ids uniform in [0, V).
inline std::vector<int32_t> RandomTokens(int64_t n, int V, uint64_t seed) {
  std::mt19937_64 generator(seed);
  std::uniform_int_distribution<int32_t> distribution(0, V - 1);
  std::vector<int32_t> tokens(n);
  for (int32_t& token : tokens) token = distribution(generator);
  return tokens;
}

template <typename To, typename From>
std::vector<To> Cast(const std::vector<From>& values) {
  return std::vector<To>(values.begin(), values.end());
}

inline std::vector<double> Scaled(std::vector<double> values, double factor) {
  for (double& value : values) value *= factor;
  return values;
}

inline double Dot(const std::vector<double>& a, const std::vector<double>& b) {
  double sum = 0.0;
  for (size_t i = 0; i < a.size(); ++i) sum += a[i] * b[i];
  return sum;
}

// d loss / d x[i] for every i by central differences (loss(x + h) - loss(x - h)) / 2h, in
// double. loss reads *x; each entry is perturbed in place and restored.
inline std::vector<double> FiniteDifferenceGradient(const std::function<double()>& loss,
                                                    std::vector<double>* x, double h = 1e-5) {
  std::vector<double> gradient(x->size());
  for (size_t i = 0; i < x->size(); ++i) {
    const double saved = (*x)[i];
    (*x)[i] = saved + h;
    const double plus = loss();
    (*x)[i] = saved - h;
    const double minus = loss();
    (*x)[i] = saved;
    gradient[i] = (plus - minus) / (2.0 * h);
  }
  return gradient;
}

// max_i |actual[i] - expected[i]| / max_i |expected[i]|: the error relative to the tensor's
// scale, so that entries near zero do not make the measure meaningless.
inline double MaxRelativeError(const std::vector<double>& actual,
                               const std::vector<double>& expected) {
  double max_difference = 0.0;
  double scale = 0.0;
  for (size_t i = 0; i < expected.size(); ++i) {
    max_difference = std::max(max_difference, std::abs(actual[i] - expected[i]));
    scale = std::max(scale, std::abs(expected[i]));
  }
  return max_difference / std::max(scale, 1e-300);
}

inline double MaxAbsoluteDifference(const std::vector<double>& a, const std::vector<double>& b) {
  double max_difference = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    max_difference = std::max(max_difference, std::abs(a[i] - b[i]));
  }
  return max_difference;
}

// Runs f with OpenMP limited to `threads` threads, then restores the previous setting.
template <typename F>
void WithOmpThreads(int threads, F f) {
  const int previous = omp_get_max_threads();
  omp_set_num_threads(threads);
  f();
  omp_set_num_threads(previous);
}

}  // namespace stagehand::ops::testing

#endif  // STAGEHAND_OPS_CPU_TEST_UTIL_H_
