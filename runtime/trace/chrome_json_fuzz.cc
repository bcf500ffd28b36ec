// libFuzzer target: Chrome trace JSON through what `tools/trace` does with it: read,
// summary (every step) and phase times, render to HTML, merge with itself, write and read back.
// Not a test of the drawing.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "runtime/trace/chrome_json.h"
#include "runtime/trace/html.h"
#include "runtime/trace/summary.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace stagehand::runtime::trace;
  const std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<Trace> trace = FromChromeJson(text);
  if (!trace.ok()) return 0;
  SummaryOptions options;
  if (auto summary = Summarize(*trace, options); summary.ok()) (void)FormatSummary(*summary);
  (void)FormatPhaseTimes(PhaseTimesOf(*trace));
  (void)RenderHtml(*trace, HtmlOptions{});
  (void)MergeTraces({*trace, *trace});
  Trace copy = *trace;
  copy.process = "other";
  (void)MergeTraces({*trace, copy});
  if (!FromChromeJson(ToChromeJson(*trace)).ok()) std::abort();
  return 0;
}
