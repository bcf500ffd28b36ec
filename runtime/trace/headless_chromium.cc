// Headless Chromium for tests: find it, dump a page's DOM.
// Not a browser driver: one command line per page, no interaction.
#include "runtime/trace/headless_chromium.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace stagehand::runtime::trace {

std::string FindChromium() {
  const char* path = std::getenv("PATH");
  for (const char* name : {"chromium", "chromium-browser", "google-chrome"}) {
    for (absl::string_view dir : absl::StrSplit(path ? path : "/usr/bin:/bin", ':')) {
      const std::string candidate = absl::StrCat(dir, "/", name);
      if (access(candidate.c_str(), X_OK) == 0) return candidate;
    }
  }
  return "";
}

std::string DumpDom(const std::string& chromium, const std::string& page_path) {
  static std::atomic<int> counter{0};
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string profile =
      absl::StrCat(tmp ? tmp : "/tmp", "/chromium-profile-", getpid(), "-", counter++);
  mkdir(profile.c_str(), 0700);
  const std::string command = absl::StrCat(
      "timeout 240 ", chromium,
      " --headless --no-sandbox --disable-gpu --disable-background-networking"
      " --disable-component-update --disable-sync --no-first-run --disable-dev-shm-usage"
      " --user-data-dir=",
      profile, " --dump-dom file://", page_path, " 2>/dev/null");
  std::string dom;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return dom;
  char buffer[1 << 16];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) dom.append(buffer, n);
  pclose(pipe);
  return dom;
}

size_t CountInDom(const std::string& dom, const std::string& needle) {
  size_t count = 0;
  for (size_t at = dom.find(needle); at != std::string::npos; at = dom.find(needle, at + 1)) {
    count += dom.compare(at + needle.size(), 2, "${") != 0;
  }
  return count;
}

}  // namespace stagehand::runtime::trace
