// Golden files for tests: read from runfiles, compare, optionally rewrite.
// Not used outside tests.
#include "tests/golden/golden.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "gtest/gtest.h"

namespace stagehand::testing {

std::string ReadGolden(const std::string& name) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const std::string path =
      std::string(srcdir == nullptr ? "." : srcdir) + "/stagehand/tests/golden/" + name;
  std::ifstream file(path, std::ios::binary);
  EXPECT_TRUE(file.good()) << "cannot read " << path << " (is it in the test's data = [...]?)";
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

void ExpectMatchesGolden(const std::string& name, const std::string& actual) {
  if (const char* dir = std::getenv("STAGEHAND_UPDATE_GOLDEN"); dir != nullptr && *dir != '\0') {
    std::ofstream file(std::string(dir) + "/" + name, std::ios::binary | std::ios::trunc);
    file << actual;
    EXPECT_TRUE(file.good()) << "cannot write " << dir << "/" << name;
    return;
  }
  EXPECT_EQ(actual, ReadGolden(name)) << "tests/golden/" << name << " should be:\n" << actual;
}

}  // namespace stagehand::testing
