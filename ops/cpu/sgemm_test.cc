// Tests for our AVX-512 float GEMM: every transpose case against a double reference over
// shapes with partial panels, alpha/beta (beta = 0 never reads c), the padding between rows
// untouched, and the same bits for any thread count and inside a parallel region.
#include "ops/cpu/sgemm.h"

#include <omp.h>

#include <cmath>
#include <limits>
#include <vector>

#include "gtest/gtest.h"
#include "ops/cpu/test_util.h"

namespace stagehand::ops::internal {
namespace {

// Letters: c (m, n) = alpha * op(a) (m, k) @ op(b) (k, n) + beta * c.
struct GemmCase {
  int m, n, k;
  bool transpose_a, transpose_b;
  float alpha, beta;
  // Padded leading dimensions, so row strides differ from the widths.
  int lda() const { return (transpose_a ? m : k) + 3; }
  int ldb() const { return (transpose_b ? k : n) + 5; }
  int ldc() const { return n + 7; }
  std::vector<float> a = {}, b = {}, c = {};

  void Fill(uint64_t seed) {
    a = testing::Cast<float>(testing::RandomVector(int64_t{transpose_a ? k : m} * lda(), seed));
    b = testing::Cast<float>(testing::RandomVector(int64_t{transpose_b ? n : k} * ldb(), seed + 1));
    c = testing::Cast<float>(testing::RandomVector(int64_t{m} * ldc(), seed + 2));
  }
  std::vector<float> Run() const {
    std::vector<float> out = c;
    if (beta == 0.f) {  // must not be read
      for (int i = 0; i < m; ++i) {
        for (int j = 0; j < n; ++j) out[int64_t{i} * ldc() + j] = std::nanf("");
      }
    }
    Sgemm(transpose_a, transpose_b, m, n, k, alpha, a.data(), lda(), b.data(), ldb(), beta,
          out.data(), ldc());
    return out;
  }
  double Reference(int i, int j) const {
    double sum = 0.0;
    for (int p = 0; p < k; ++p) {
      const double x = transpose_a ? a[int64_t{p} * lda() + i] : a[int64_t{i} * lda() + p];
      const double y = transpose_b ? b[int64_t{j} * ldb() + p] : b[int64_t{p} * ldb() + j];
      sum += x * y;
    }
    const double old = beta == 0.f ? 0.0 : double{beta} * c[int64_t{i} * ldc() + j];
    return double{alpha} * sum + old;
  }
};

class SgemmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!kHaveSgemm) GTEST_SKIP() << "this build does not target AVX-512";
  }
};

TEST_F(SgemmTest, MatchesDoubleReferenceForEveryTransposeAndPartialPanels) {
  const int shapes[][3] = {{1, 1, 1},    {7, 5, 3},     {8, 48, 256},  {9, 49, 257},
                           {17, 100, 513}, {64, 64, 64}, {3, 130, 20}, {40, 97, 300}};
  const float scalars[][2] = {{1.f, 0.f}, {1.f, 1.f}, {0.37f, -0.5f}};
  for (const auto& shape : shapes) {
    for (int transposes = 0; transposes < 4; ++transposes) {
      for (const auto& scalar : scalars) {
        GemmCase g{shape[0], shape[1], shape[2], (transposes & 1) != 0, (transposes & 2) != 0,
                   scalar[0], scalar[1]};
        g.Fill(7);
        const std::vector<float> out = g.Run();
        double worst = 0.0;
        for (int i = 0; i < g.m; ++i) {
          for (int j = 0; j < g.n; ++j) {
            const double error = std::abs(out[int64_t{i} * g.ldc() + j] - g.Reference(i, j));
            worst = std::isnan(error) ? std::numeric_limits<double>::infinity()
                                      : std::max(worst, error);
          }
          for (int j = g.n; j < g.ldc(); ++j) {  // padding untouched
            ASSERT_EQ(out[int64_t{i} * g.ldc() + j], g.c[int64_t{i} * g.ldc() + j]);
          }
        }
        EXPECT_LT(worst, 1e-5 * std::sqrt(double(g.k)))
            << g.m << "x" << g.n << "x" << g.k << " transposes " << transposes << " alpha "
            << g.alpha << " beta " << g.beta;
      }
    }
  }
}

TEST_F(SgemmTest, SameBitsForAnyThreadCountAndInsideAParallelRegion) {
  // Several A blocks, k blocks and B panels, with partial ones; big enough to run in parallel.
  for (int transposes = 0; transposes < 4; ++transposes) {
    GemmCase g{600, 150, 700, (transposes & 1) != 0, (transposes & 2) != 0, 1.f, 1.f};
    g.Fill(11);
    const std::vector<float> reference = g.Run();
    for (int threads : {1, 2, 3}) {
      testing::WithOmpThreads(threads, [&] { EXPECT_EQ(g.Run(), reference) << threads; });
    }
    std::vector<float> nested;
#pragma omp parallel num_threads(2)
    {
#pragma omp single
      nested = g.Run();
    }
    EXPECT_EQ(nested, reference);
  }
}

TEST_F(SgemmTest, EmptyKScalesC) {
  GemmCase g{3, 4, 0, false, false, 1.f, 0.5f};
  g.Fill(3);
  const std::vector<float> out = g.Run();
  for (int i = 0; i < g.m; ++i) {
    for (int j = 0; j < g.n; ++j) {
      EXPECT_EQ(out[i * g.ldc() + j], 0.5f * g.c[i * g.ldc() + j]);
    }
  }
}

}  // namespace
}  // namespace stagehand::ops::internal
