#include <cblas.h>
#include "absl/status/status.h"
#include "gtest/gtest.h"
TEST(Smoke, Links) {
  float a[4] = {1, 2, 3, 4}, b[4] = {1, 0, 0, 1}, c[4] = {0};
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 2, 2, 2, 1.f, a, 2, b, 2, 0.f, c, 2);
  EXPECT_EQ(c[3], 4.f);
  EXPECT_TRUE(absl::OkStatus().ok());
}
