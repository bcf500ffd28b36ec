// Tests of the HTML timeline: the page is self-contained, and headless Chromium (Debian's
// `chromium`, which bazelw installs) runs its script and draws one box per span. The
// Chromium tests skip when no chromium is on PATH.
#include "runtime/trace/html.h"

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/planner.h"
#include "runtime/simulator.h"
#include "runtime/trace/from_simulation.h"
#include "runtime/trace/headless_chromium.h"

namespace stagehand::runtime::trace {
namespace {

Trace SimulatedTrace(const char* planner, int P, int M, double transfer) {
  auto def = PlannerRegistry::Default().Get(planner);
  EXPECT_TRUE(def.ok()) << def.status();
  auto spec = (*def)->MakeSpec({P, M, 0});
  EXPECT_TRUE(spec.ok()) << spec.status();
  CostModel cost;
  cost.transfer = transfer;
  auto sim = SimulateSpec(**def, *spec, cost);
  EXPECT_TRUE(sim.ok()) << sim.status();
  return TraceFromSimulation(*sim, *spec);
}

std::string WritePage(const std::string& html, const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path = absl::StrCat(dir ? dir : "/tmp", "/", name, ".html");
  std::ofstream(path) << html;
  return path;
}

TEST(HtmlTest, PageIsSelfContained) {
  const std::string html = RenderHtml(SimulatedTrace("1f1b", 4, 8, 0.5));
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_EQ(html.find("http://"), html.find("http://www.w3.org/2000/svg"));  // only the namespace
  EXPECT_EQ(html.find("https://"), std::string::npos);
  EXPECT_EQ(html.find("<script src"), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);
}

TEST(HtmlTest, ChromiumDrawsOneBoxPerSpan) {
  const std::string chromium = FindChromium();
  if (chromium.empty()) GTEST_SKIP() << "chromium is not installed (./bazelw installs it)";
  // 1F1B, P=4, M=8: 64 compute actions, 24 transfers each way, each a send and a receive.
  const Trace trace = SimulatedTrace("1f1b", 4, 8, 0.5);
  ASSERT_EQ(trace.spans.size(), 64u + 2 * 48u);
  const std::string dom = DumpDom(chromium, WritePage(RenderHtml(trace), "p4m8"));
  ASSERT_FALSE(dom.empty()) << "chromium printed no DOM";
  EXPECT_EQ(CountInDom(dom, "<rect class=\"box "), trace.spans.size());
  EXPECT_EQ(CountInDom(dom, "<rect class=\"box F"), 32u);
  EXPECT_EQ(CountInDom(dom, "<rect class=\"box B"), 32u);
  EXPECT_NE(dom.find("data-boxes=\"160\""), std::string::npos);
  // Microbatch numbers are drawn on the boxes.
  EXPECT_GT(CountInDom(dom, "<text class=\"label\""), 32u);
}

TEST(HtmlTest, MarksExposedTransfersAndOpensWithTheCriticalPathFromTheUrl) {
  // Two stages, one microbatch, transfers of 0.5: s0's send [1, 1.5] runs while s0 waits
  // (exposed), s1's receive too; nothing else overlaps compute.
  Trace trace = SimulatedTrace("1f1b", 2, 1, 0.5);
  const std::string html = RenderHtml(trace);
  EXPECT_NE(html.find("\"exposed\":[["), std::string::npos);
  const std::string chromium = FindChromium();
  if (chromium.empty()) GTEST_SKIP() << "chromium is not installed (./bazelw installs it)";
  const std::string page = WritePage(html, "exposed");
  const std::string plain = DumpDom(chromium, page);
  ASSERT_FALSE(plain.empty()) << "chromium printed no DOM";
  // Each of the 4 transfer spans (2 sends, 2 receives) is exposed whole.
  EXPECT_EQ(CountInDom(plain, "<rect class=\"exposed\" x=\""), 4u);
  EXPECT_EQ(plain.find("class=\"critmode\""), std::string::npos);
  const std::string critical = DumpDom(chromium, page + "#critical");
  EXPECT_NE(critical.find("class=\"critmode\""), std::string::npos);
  // Box labels name the chunk: F0 c0 on stage 0, F0 c1 on stage 1.
  EXPECT_NE(plain.find(">F0 c1<"), std::string::npos);
}

TEST(HtmlTest, ChromiumDrawsSixtyFourStagesByFiveHundredTwelveMicrobatches) {
  const std::string chromium = FindChromium();
  if (chromium.empty()) GTEST_SKIP() << "chromium is not installed (./bazelw installs it)";
  const Trace trace = SimulatedTrace("1f1b", 64, 512, 0.25);
  // 64 * 512 * 2 compute actions, 63 * 512 transfers each way, each a send and a receive.
  ASSERT_EQ(trace.spans.size(), 64u * 1024 + 4u * 63 * 512);
  const std::string dom = DumpDom(chromium, WritePage(RenderHtml(trace), "p64m512"));
  ASSERT_FALSE(dom.empty()) << "chromium printed no DOM";
  EXPECT_NE(dom.find(absl::StrCat("data-boxes=\"", trace.spans.size(), "\"")), std::string::npos);
}

}  // namespace
}  // namespace stagehand::runtime::trace
