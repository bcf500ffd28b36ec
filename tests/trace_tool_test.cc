// End-to-end tests of tools/trace on files: a real CPU run's trace (launch --trace at P=4,
// M=8) gives the busy fractions launch printed and opens in the rendered page; malformed,
// truncated and missing files get a clear error and exit code 1, never a crash.
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <regex>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/trace/chrome_json.h"
#include "runtime/trace/headless_chromium.h"

namespace stagehand {
namespace {

struct Result {
  int exit_code = -1;  // -1: killed by a signal
  std::string output;  // stdout and stderr
};

std::string Runfile(const std::string& path) {
  return absl::StrCat(std::getenv("TEST_SRCDIR"), "/", std::getenv("TEST_WORKSPACE"), "/", path);
}

std::string TempPath(const std::string& name) {
  return absl::StrCat(std::getenv("TEST_TMPDIR"), "/", name);
}

Result RunCommand(const std::string& command) {
  Result r;
  FILE* pipe = popen(absl::StrCat(command, " 2>&1").c_str(), "r");
  if (pipe == nullptr) return r;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) r.output.append(buffer, n);
  const int status = pclose(pipe);
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  return r;
}

Result Trace(const std::string& args) {
  return RunCommand(absl::StrCat(Runfile("tools/trace"), " ", args));
}

void Write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// "busy s0 0.40 s1 0.41 ..." -> stage -> fraction, from the first line holding `prefix`.
std::map<int, double> BusyFractions(const std::string& text, const std::string& prefix) {
  std::map<int, double> out;
  size_t at = text.find(prefix);
  if (at == std::string::npos) return out;
  if (text[at] == '\n') ++at;
  const std::string line = text.substr(at, text.find('\n', at) - at);
  const std::regex pair(R"(s(\d+) (\d+\.\d+))");
  for (auto it = std::sregex_iterator(line.begin(), line.end(), pair); it != std::sregex_iterator();
       ++it) {
    out[std::stoi((*it)[1])] = std::stod((*it)[2]);
  }
  return out;
}

TEST(TraceToolTest, RealRunSummaryAgreesWithLaunchAndRenders) {
  const std::string trace_path = TempPath("launch_trace.json");
  const Result launch = RunCommand(
      absl::StrCat(Runfile("tools/launch"),
                   " --steps=3 --stages=4 --microbatches=8 --eval_batches=1 --trace=", trace_path));
  ASSERT_EQ(launch.exit_code, 0) << launch.output;
  const std::map<int, double> launch_busy = BusyFractions(launch.output, "summary: step time");
  ASSERT_EQ(launch_busy.size(), 4u) << launch.output;

  const Result summary = Trace(absl::StrCat("summary ", trace_path));
  ASSERT_EQ(summary.exit_code, 0) << summary.output;
  EXPECT_NE(summary.output.find("4 stages, 4 chunks, 8 microbatches, 3 steps"), std::string::npos)
      << summary.output;
  EXPECT_NE(summary.output.find("critical path of step 3"), std::string::npos) << summary.output;
  const std::map<int, double> trace_busy = BusyFractions(summary.output, "\nbusy ");
  ASSERT_EQ(trace_busy.size(), 4u) << summary.output;
  for (const auto& [stage, busy] : launch_busy) {
    // The same seconds over the same step times, both printed with two decimals.
    EXPECT_NEAR(trace_busy.at(stage), busy, 0.0101) << "stage " << stage << "\n"
                                                    << launch.output << summary.output;
  }

  const std::string page = TempPath("timeline.html");
  const Result render = Trace(absl::StrCat("render ", trace_path, " -o ", page));
  ASSERT_EQ(render.exit_code, 0) << render.output;
  const std::string chromium = runtime::trace::FindChromium();
  if (chromium.empty()) GTEST_SKIP() << "chromium is not installed (./bazelw installs it)";
  auto trace = runtime::trace::ReadChromeJsonFile(trace_path);
  ASSERT_TRUE(trace.ok()) << trace.status();
  const std::string dom = runtime::trace::DumpDom(chromium, page);
  ASSERT_FALSE(dom.empty());
  EXPECT_EQ(runtime::trace::CountInDom(dom, "<rect class=\"box "), trace->spans.size());
  // 3 steps x 4 stages x 8 microbatches of F and of fused B.
  EXPECT_EQ(runtime::trace::CountInDom(dom, "<rect class=\"box F"), 96u);
  EXPECT_EQ(runtime::trace::CountInDom(dom, "<rect class=\"box B"), 96u);
}

TEST(TraceToolTest, TruncatedFileIsAClearError) {
  const std::string path = TempPath("truncated.json");
  Write(path, "{\"otherData\": {\"stagehand_trace\": 1, \"num_stages\": 2, \"num_chu");
  for (const char* verb : {"summary", "render"}) {
    const Result r = Trace(absl::StrCat(verb, " ", path, " -o ", TempPath("out.html")));
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("trace: error: "), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("truncated"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(path), std::string::npos) << r.output;
  }
}

TEST(TraceToolTest, MalformedFilesAreClearErrors) {
  const std::map<std::string, std::string> cases = {
      {"not valid JSON (malformed)", "hello"},
      {"not a Stagehand trace", "{\"traceEvents\": []}"},
      {"trace event 0: 'args' is missing",
       "{\"otherData\": {\"stagehand_trace\": 1, \"num_stages\": 2, \"num_chunks\": 2, "
       "\"num_microbatches\": 1, \"epoch_unix_us\": 0, \"clock_offset_us\": 0}, \"traceEvents\": "
       "[{\"ph\": \"X\", \"cat\": \"compute\", \"ts\": 0, \"dur\": 1}]}"},
      {"no compute actions",
       "{\"otherData\": {\"stagehand_trace\": 1, \"num_stages\": 2, \"num_chunks\": 2, "
       "\"num_microbatches\": 1, \"epoch_unix_us\": 0, \"clock_offset_us\": 0}, \"traceEvents\": "
       "[]}"},
      {"", ""},  // an empty file
  };
  int i = 0;
  for (const auto& [expected, text] : cases) {
    const std::string path = TempPath(absl::StrCat("bad", i++, ".json"));
    Write(path, text);
    const Result r = Trace(absl::StrCat("summary ", path));
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find(absl::StrCat("trace: error: ")), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(expected), std::string::npos) << r.output;
  }
}

TEST(TraceToolTest, MissingFileAndBadUsage) {
  Result r = Trace("summary /nonexistent/trace.json");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("cannot open trace file /nonexistent/trace.json"), std::string::npos)
      << r.output;
  r = Trace("");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("usage:"), std::string::npos) << r.output;
  r = Trace("render x.json");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("render needs -o OUT"), std::string::npos) << r.output;
  r = Trace("explode x.json");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("unknown command 'explode'"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace stagehand
