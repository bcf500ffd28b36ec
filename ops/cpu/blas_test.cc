// How TiledGemm cuts a GEMM into strips, and that the strips compute the whole product.
#include "ops/cpu/blas.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "ops/cpu/test_util.h"

namespace stagehand::ops::internal {
namespace {

// The strips tile the cut side exactly once: none empty, none past the end.
void ExpectCovers(const GemmStrips& strips, int length) {
  ASSERT_GE(strips.count, 1);
  EXPECT_LE(int64_t{strips.size} * (strips.count - 1), length - 1);
  EXPECT_GE(int64_t{strips.size} * strips.count, length);
}

TEST(GemmStripsTest, CutsTheLongerSideIntoAlignedStrips) {
  // Shapes of GPT-2 124M at B=4, T=256 (1024 token rows): forward, input and weight gradients.
  struct Shape {
    int m, n, k;
  };
  for (const Shape s :
       {Shape{1024, 2304, 768}, Shape{1024, 768, 3072}, Shape{1024, 50257, 768},
        Shape{1024, 768, 50257}, Shape{50257, 768, 1024}, Shape{2304, 768, 1024},
        Shape{3072, 768, 1024}, Shape{768, 768, 1024}, Shape{300, 260, 40}, Shape{77, 1001, 33}}) {
    const GemmStrips strips = ChooseGemmStrips(s.m, s.n, s.k);
    const int length = strips.by_rows ? s.m : s.n;
    SCOPED_TRACE(::testing::Message() << s.m << "x" << s.n << "x" << s.k);
    EXPECT_EQ(strips.by_rows, s.m >= s.n);
    ExpectCovers(strips, length);
    EXPECT_EQ(strips.count % 2, 0);  // so for these shapes; not promised for every shape
    EXPECT_EQ(strips.size % 16, 0);
  }
  // The LM head's 50257 columns: about 512 wide, so the 1024 x 768 activations are repacked
  // 96 times, not the 38.6M-float weight 2 or 8 times.
  const GemmStrips head = ChooseGemmStrips(1024, 50257, 768);
  EXPECT_FALSE(head.by_rows);
  EXPECT_EQ(head.count, 96);
  EXPECT_EQ(head.size, 528);
}

TEST(GemmStripsTest, SmallProblemsStayOneCall) {
  const GemmStrips tiny = ChooseGemmStrips(8, 8, 8);
  EXPECT_EQ(tiny.count, 1);
  EXPECT_EQ(tiny.size, 8);
  const GemmStrips thin = ChooseGemmStrips(20, 4000, 4000);  // big, but 4000 is the long side
  EXPECT_FALSE(thin.by_rows);
  EXPECT_GT(thin.count, 1);
}

// Every transpose combination, with leading dimensions wider than the matrices: the strips
// agree with a float64 product.
TEST(TiledGemmTest, MatchesTheProductForEveryTransposeAndStripDirection) {
  for (const bool tall : {true, false}) {
    const int m = tall ? 700 : 45, n = tall ? 60 : 900, k = 37;
    for (const CBLAS_TRANSPOSE ta : {CblasNoTrans, CblasTrans}) {
      for (const CBLAS_TRANSPOSE tb : {CblasNoTrans, CblasTrans}) {
        const int lda = (ta == CblasNoTrans ? k : m) + 3, ldb = (tb == CblasNoTrans ? n : k) + 5;
        const int ldc = n + 2;
        const std::vector<double> a64 =
            testing::RandomVector((ta == CblasNoTrans ? m : k) * lda, 1);
        const std::vector<double> b64 =
            testing::RandomVector((tb == CblasNoTrans ? k : n) * ldb, 2);
        const std::vector<double> c64 = testing::RandomVector(m * ldc, 3);
        const std::vector<float> a(a64.begin(), a64.end()), b(b64.begin(), b64.end());
        std::vector<float> c(c64.begin(), c64.end());
        TiledGemm(ta, tb, m, n, k, 0.5f, a.data(), lda, b.data(), ldb, 2.0f, c.data(), ldc);
        double worst = 0.0;
        for (int i = 0; i < m; ++i) {
          for (int j = 0; j < n; ++j) {
            double want = 2.0 * double(float(c64[i * ldc + j]));
            for (int p = 0; p < k; ++p) {
              const float x = ta == CblasNoTrans ? a[i * lda + p] : a[p * lda + i];
              const float y = tb == CblasNoTrans ? b[p * ldb + j] : b[j * ldb + p];
              want += 0.5 * double(x) * double(y);
            }
            worst = std::max(worst, std::abs(want - double(c[i * ldc + j])));
          }
          // Padding past n is never written.
          EXPECT_EQ(c[i * ldc + n], float(c64[i * ldc + n]));
        }
        EXPECT_LT(worst, 1e-4) << "tall=" << tall << " ta=" << ta << " tb=" << tb;
      }
    }
  }
}

}  // namespace
}  // namespace stagehand::ops::internal
