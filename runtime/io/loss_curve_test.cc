// Tests for the loss-curve SVG: a well-formed picture with every series, written atomically.
#include "runtime/io/loss_curve.h"

#include <filesystem>
#include <fstream>
#include <iterator>

#include "gtest/gtest.h"

namespace stagehand::runtime {
namespace {

LossCurve Curve() {
  LossCurve c;
  c.title = "fortunes <byte>";
  for (int s = 1; s <= 100; ++s) c.train.emplace_back(s, 5.0 / std::sqrt(double(s)));
  c.validation = {{50, 1.2}, {100, 0.9}};
  return c;
}

TEST(LossCurveTest, RendersTrainingSmoothedAndHeldOutSeries) {
  const std::string svg = RenderLossCurveSvg(Curve());
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_NE(svg.find("fortunes &lt;byte&gt;"), std::string::npos);
  size_t polylines = 0;
  for (size_t at = svg.find("<polyline"); at != std::string::npos;
       at = svg.find("<polyline", at + 1))
    ++polylines;
  EXPECT_EQ(polylines, 3u);
  EXPECT_NE(svg.find("<circle"), std::string::npos);
  EXPECT_EQ(svg.find("nan"), std::string::npos);
}

TEST(LossCurveTest, EmptyAndFlatCurvesStillRender) {
  EXPECT_NE(RenderLossCurveSvg(LossCurve{}).find("</svg>"), std::string::npos);
  LossCurve flat;
  flat.train = {{1, 2.0}, {2, 2.0}};
  const std::string svg = RenderLossCurveSvg(flat);
  EXPECT_EQ(svg.find("nan"), std::string::npos);
  EXPECT_EQ(svg.find("inf"), std::string::npos);
}

TEST(LossCurveTest, WritesTheFile) {
  const std::string path = testing::TempDir() + "/curve.svg";
  ASSERT_TRUE(WriteLossCurveSvg(path, Curve()).ok());
  std::ifstream in(path);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), RenderLossCurveSvg(Curve()));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

}  // namespace
}  // namespace stagehand::runtime
