// Tests of ResolveUserPath: relative paths join the user's directory, nothing else changes.
#include "runtime/io/user_path.h"

#include <cstdlib>

#include "gtest/gtest.h"

namespace stagehand::runtime {
namespace {

TEST(ResolveUserPath, RelativePathJoinsTheWorkingDirectory) {
  EXPECT_EQ(ResolveUserPath("data/tiny.txt", "/home/me/work"), "/home/me/work/data/tiny.txt");
  EXPECT_EQ(ResolveUserPath("out.json", "/home/me/"), "/home/me/out.json");
  EXPECT_EQ(ResolveUserPath("../x", "/a/b"), "/a/b/../x");
}

TEST(ResolveUserPath, AbsoluteAndEmptyPathsStay) {
  EXPECT_EQ(ResolveUserPath("/data/x", "/home/me"), "/data/x");
  EXPECT_EQ(ResolveUserPath("", "/home/me"), "");
}

TEST(ResolveUserPath, WithoutAWorkingDirectoryNothingChanges) {
  EXPECT_EQ(ResolveUserPath("data/x", nullptr), "data/x");
  EXPECT_EQ(ResolveUserPath("data/x", ""), "data/x");
}

TEST(ResolveUserPath, ReadsBuildWorkingDirectory) {
  setenv("BUILD_WORKING_DIRECTORY", "/where/bazel/ran", 1);
  EXPECT_EQ(ResolveUserPath("ckpt"), "/where/bazel/ran/ckpt");
  unsetenv("BUILD_WORKING_DIRECTORY");
  EXPECT_EQ(ResolveUserPath("ckpt"), "ckpt");
}

}  // namespace
}  // namespace stagehand::runtime
