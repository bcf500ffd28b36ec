// Test helper: loads a page in headless Chromium (Debian's `chromium`, which bazelw
// installs) and returns the DOM after the page's scripts ran. Not for production code:
// tests that use it skip when FindChromium() is empty.
#ifndef STAGEHAND_RUNTIME_TRACE_HEADLESS_CHROMIUM_H_
#define STAGEHAND_RUNTIME_TRACE_HEADLESS_CHROMIUM_H_

#include <string>

namespace stagehand::runtime::trace {

// The first of chromium, chromium-browser, google-chrome on PATH, or empty.
std::string FindChromium();

// Runs `chromium --headless ... --dump-dom file://page_path` with a fresh profile under
// $TEST_TMPDIR (or /tmp) and returns what it printed; empty if it could not run.
std::string DumpDom(const std::string& chromium, const std::string& page_path);

// Occurrences of `needle` in `dom`, skipping those followed by "${" (the page script's
// own templates, which the DOM dump contains too).
size_t CountInDom(const std::string& dom, const std::string& needle);

}  // namespace stagehand::runtime::trace

#endif  // STAGEHAND_RUNTIME_TRACE_HEADLESS_CHROMIUM_H_
