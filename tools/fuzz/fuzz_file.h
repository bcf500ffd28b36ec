// Test-only helper for fuzz targets whose reader takes a path: puts the input in a file
// (under $TEST_TMPDIR or /tmp, one per process) and returns its path. Not a filesystem.
#ifndef STAGEHAND_TOOLS_FUZZ_FUZZ_FILE_H_
#define STAGEHAND_TOOLS_FUZZ_FUZZ_FILE_H_

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

namespace stagehand::fuzz {

// A folder of this process's own for the target's files.
inline const std::string& FuzzDir() {
  static const std::string dir = [] {
    const char* base = std::getenv("TEST_TMPDIR");
    std::string d = std::string(base != nullptr ? base : "/tmp") + "/stagehand_fuzz_" +
                    std::to_string(::getpid());
    std::string cmd = "mkdir -p '" + d + "'";
    if (std::system(cmd.c_str()) != 0) std::abort();
    return d;
  }();
  return dir;
}

// Writes `size` bytes of `data` to FuzzDir()/name and returns the path.
inline std::string WriteFuzzFile(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = FuzzDir() + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

}  // namespace stagehand::fuzz

#endif  // STAGEHAND_TOOLS_FUZZ_FUZZ_FILE_H_
