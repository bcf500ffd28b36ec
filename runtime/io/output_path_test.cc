#include "runtime/io/output_path.h"

#include <cstdlib>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace stagehand::runtime {
namespace {

using ::testing::HasSubstr;

std::string TempDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

TEST(CheckOutputFileTest, AcceptsNoPathANewFileAndAnExistingFile) {
  EXPECT_TRUE(CheckOutputFile("--save_params", "").ok());
  EXPECT_TRUE(CheckOutputFile("--save_params", TempDir() + "/new.safetensors").ok());
  const std::string existing = TempDir() + "/existing.json";
  std::ofstream(existing) << "{}";
  EXPECT_TRUE(CheckOutputFile("--trace", existing).ok());
}

TEST(CheckOutputFileTest, NamesTheFlagAndTheMissingDirectory) {
  absl::Status status = CheckOutputFile("--trace", "/no/such/dir/trace.json");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(),
              HasSubstr("--trace=/no/such/dir/trace.json: directory /no/such/dir does not exist"));
}

TEST(CheckOutputFileTest, RejectsADirectory) {
  EXPECT_THAT(CheckOutputFile("--export", TempDir()).message(),
              HasSubstr("is a directory; give a file name"));
}

}  // namespace
}  // namespace stagehand::runtime
