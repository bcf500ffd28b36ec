// Tests for WriteFileAtomically: the whole file or the old one, nothing left behind on
// failure, and a full disk reported as such. Not a test of the callers' formats.
#include "runtime/io/atomic_file.h"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/io/tiny_disk_for_test.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::runtime {
namespace {

using ::stagehand::testing::IsOk;
using ::stagehand::testing::StatusIs;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Names in `dir` other than `keep`.
std::vector<std::string> Others(const std::string& dir, const std::string& keep) {
  std::vector<std::string> out;
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
    if (e.path().filename() != keep) out.push_back(e.path().filename().string());
  }
  return out;
}

TEST(AtomicFileTest, WritesThePiecesInOrderAndLeavesNoTemporary) {
  const std::string dir = ::testing::TempDir() + "/atomic_pieces";
  fs::create_directories(dir);
  const std::vector<absl::string_view> pieces = {"head", "", "er|", "body"};
  ASSERT_THAT(WriteFileAtomically(dir + "/f", pieces), IsOk());
  EXPECT_EQ(ReadFile(dir + "/f"), "header|body");
  EXPECT_THAT(Others(dir, "f"), ::testing::IsEmpty());
}

TEST(AtomicFileTest, ReplacesAnExistingFile) {
  const std::string dir = ::testing::TempDir() + "/atomic_replace";
  fs::create_directories(dir);
  ASSERT_THAT(WriteFileAtomically(dir + "/f", "old contents"), IsOk());
  ASSERT_THAT(WriteFileAtomically(dir + "/f", "new"), IsOk());
  EXPECT_EQ(ReadFile(dir + "/f"), "new");
}

TEST(AtomicFileTest, MissingFolderIsPermissionDeniedNamingThePath) {
  const std::string path = ::testing::TempDir() + "/no/such/folder/f";
  EXPECT_THAT(WriteFileAtomically(path, "x"),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr(path)));
}

TEST(AtomicFileTest, FullDiskSaysSoKeepsTheOldFileAndRemovesTheTemporary) {
  absl::StatusOr<std::string> disk = MountTinyDisk(::testing::TempDir(), 64 * 1024);
  if (!disk.ok()) GTEST_SKIP() << "cannot mount a small tmpfs here: " << disk.status();
  const std::string path = *disk + "/f";
  ASSERT_THAT(WriteFileAtomically(path, "the last good contents"), IsOk());
  const std::string big(1 << 20, 'x');
  absl::Status s = WriteFileAtomically(path, big);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kResourceExhausted,
                          ::testing::AllOf(HasSubstr("disk full"), HasSubstr(path),
                                           HasSubstr("1048576 bytes"))));
  EXPECT_EQ(ReadFile(path), "the last good contents");
  EXPECT_THAT(Others(*disk, "f"), ::testing::IsEmpty());
}

}  // namespace
}  // namespace stagehand::runtime
