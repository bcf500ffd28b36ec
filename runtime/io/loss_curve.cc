// SVG rendering of a loss curve: linear axes with "nice" ticks, polylines, a legend.
#include "runtime/io/loss_curve.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/io/atomic_file.h"

namespace stagehand::runtime {
namespace {

constexpr double kWidth = 800, kHeight = 450, kLeft = 70, kRight = 20, kTop = 40, kBottom = 50;

// 1, 2 or 5 times a power of ten, about span / 5.
double TickStep(double span) {
  const double raw = span / 5, power = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0}) {
    if (m * power >= raw) return m * power;
  }
  return 10 * power;
}

std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else if (c == '&')
      out += "&amp;";
    else
      out.push_back(c);
  }
  return out;
}

}  // namespace

std::string RenderLossCurveSvg(const LossCurve& curve) {
  int64_t max_step = 1;
  double lo = INFINITY, hi = -INFINITY;
  for (const auto* series : {&curve.train, &curve.validation}) {
    for (const auto& [step, loss] : *series) {
      if (!std::isfinite(loss)) continue;
      max_step = std::max(max_step, step);
      lo = std::min(lo, loss), hi = std::max(hi, loss);
    }
  }
  if (!(lo <= hi)) lo = 0, hi = 1;
  if (hi - lo < 1e-9) lo -= 0.5, hi += 0.5;
  const double y_step = TickStep(hi - lo);
  lo = std::floor(lo / y_step) * y_step, hi = std::ceil(hi / y_step) * y_step;
  const double plot_w = kWidth - kLeft - kRight, plot_h = kHeight - kTop - kBottom;
  auto x = [&](double step) { return kLeft + plot_w * step / double(max_step); };
  auto y = [&](double loss) { return kTop + plot_h * (hi - loss) / (hi - lo); };
  std::string svg = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" viewBox=\"0 0 %g %g\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" "
      "fill=\"white\"/>\n",
      kWidth, kHeight, kWidth, kHeight);
  absl::StrAppendFormat(&svg, "<text x=\"%g\" y=\"24\" font-size=\"15\">%s</text>\n", kLeft,
                        Escape(curve.title));
  // Axes, grid and ticks.
  for (double v = lo; v <= hi + y_step / 2; v += y_step) {
    absl::StrAppendFormat(&svg,
                          "<line x1=\"%g\" y1=\"%.1f\" x2=\"%g\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>"
                          "<text x=\"%g\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                          kLeft, y(v), kWidth - kRight, y(v), kLeft - 6, y(v) + 4,
                          std::round(v / y_step) * y_step);
  }
  const double x_step = std::max(1.0, TickStep(double(max_step)));
  for (double s = 0; s <= max_step + x_step / 2; s += x_step) {
    absl::StrAppendFormat(&svg,
                          "<line x1=\"%.1f\" y1=\"%g\" x2=\"%.1f\" y2=\"%g\" stroke=\"#e5e5e5\"/>"
                          "<text x=\"%.1f\" y=\"%g\" text-anchor=\"middle\">%g</text>\n",
                          x(s), kTop, x(s), kHeight - kBottom, x(s), kHeight - kBottom + 18, s);
  }
  absl::StrAppendFormat(
      &svg,
      "<rect x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" fill=\"none\" stroke=\"#444\"/>\n"
      "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">step</text>\n"
      "<text transform=\"translate(18 %g) rotate(-90)\" text-anchor=\"middle\">loss</text>\n",
      kLeft, kTop, plot_w, plot_h, kLeft + plot_w / 2, kHeight - 12, kTop + plot_h / 2);
  // Series: raw training loss (faint), its exponential moving average, held-out points.
  auto polyline = [&](const std::vector<std::pair<int64_t, double>>& points, const char* style) {
    std::string p;
    for (const auto& [step, loss] : points) {
      if (std::isfinite(loss)) absl::StrAppendFormat(&p, "%.1f,%.1f ", x(step), y(loss));
    }
    absl::StrAppendFormat(&svg, "<polyline fill=\"none\" %s points=\"%s\"/>\n", style, p);
  };
  polyline(curve.train, "stroke=\"#9ecae1\" stroke-width=\"1\"");
  std::vector<std::pair<int64_t, double>> smooth;
  double ema = 0;
  for (size_t i = 0; i < curve.train.size(); ++i) {
    ema = i == 0 ? curve.train[i].second : 0.98 * ema + 0.02 * curve.train[i].second;
    smooth.emplace_back(curve.train[i].first, ema);
  }
  polyline(smooth, "stroke=\"#08519c\" stroke-width=\"2\"");
  polyline(curve.validation, "stroke=\"#d94801\" stroke-width=\"2\"");
  for (const auto& [step, loss] : curve.validation) {
    absl::StrAppendFormat(&svg, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"#d94801\"/>\n",
                          x(step), y(loss));
  }
  const double lx = kWidth - kRight - 190, ly = kTop + 16;
  absl::StrAppendFormat(
      &svg,
      "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"#08519c\" stroke-width=\"2\"/>"
      "<text x=\"%g\" y=\"%g\">training (smoothed)</text>\n"
      "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"#d94801\" stroke-width=\"2\"/>"
      "<text x=\"%g\" y=\"%g\">held-out</text>\n</svg>\n",
      lx, ly, lx + 24, ly, lx + 30, ly + 4, lx, ly + 18, lx + 24, ly + 18, lx + 30, ly + 22);
  return svg;
}

absl::Status WriteLossCurveSvg(const std::string& path, const LossCurve& curve) {
  return WriteFileAtomically(path, RenderLossCurveSvg(curve));
}

}  // namespace stagehand::runtime
