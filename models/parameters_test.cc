// Tests for ParameterSet: layout, deterministic per-name initialisation.
#include "models/parameters.h"

#include <cmath>

#include "gtest/gtest.h"

namespace stagehand::models {
namespace {

TEST(ParametersTest, LayoutIsContiguousInDeclarationOrder) {
  ParameterSet<float> p;
  p.Add("a", {2, 3}, Init::kNormal, 0.02, true);
  p.Add("b", {4}, Init::kOnes, 0, false);
  p.Allocate(7);
  EXPECT_EQ(p.size(), 10);
  EXPECT_EQ(p.infos()[1].offset, 6);
  EXPECT_EQ(p.value("b")[3], 1.f);
  EXPECT_EQ(p.grad("a")[0], 0.f);
}

TEST(ParametersTest, InitDependsOnNameAndSeedNotOnNeighbours) {
  ParameterSet<float> one, two;
  one.Add("x", {100}, Init::kNormal, 0.02, true);
  two.Add("other", {7}, Init::kNormal, 0.02, true);
  two.Add("x", {100}, Init::kNormal, 0.02, true);
  one.Allocate(3);
  two.Allocate(3);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(one.value("x")[i], two.value("x")[i]);
  ParameterSet<float> other_seed;
  other_seed.Add("x", {100}, Init::kNormal, 0.02, true);
  other_seed.Allocate(4);
  EXPECT_NE(one.value("x")[0], other_seed.value("x")[0]);
}

TEST(ParametersTest, NormalHasRequestedStd) {
  std::vector<double> v(20000);
  FillNormal(v.data(), v.size(), 1, "w", 0.5);
  double sum = 0, sq = 0;
  for (double x : v) sum += x, sq += x * x;
  double mean = sum / v.size(), std = std::sqrt(sq / v.size() - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.02);
  EXPECT_NEAR(std, 0.5, 0.02);
}

}  // namespace
}  // namespace stagehand::models
