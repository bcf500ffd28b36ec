// MappedFile maps regular files only and reads a file's bytes as they are on disk;
// CheckFitsInMemory names what does not fit and by how much.
#include "runtime/io/mapped_file.h"

#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::runtime {
namespace {

using ::stagehand::testing::IsOk;
using ::stagehand::testing::StatusIs;
using ::testing::HasSubstr;

std::string Temp(const std::string& name) {
  return std::string(std::getenv("TEST_TMPDIR")) + "/" + name;
}

TEST(MappedFile, ReadsTheBytesOnDisk) {
  const std::string path = Temp("bytes");
  std::ofstream(path, std::ios::binary) << std::string("abc\0def", 7);
  absl::StatusOr<MappedFile> f = MappedFile::Open(path);
  ASSERT_THAT(f.status(), IsOk());
  EXPECT_EQ(f->bytes(), absl::string_view("abc\0def", 7));
  MappedFile moved = std::move(*f);
  EXPECT_EQ(moved.size(), 7u);
  EXPECT_EQ(moved.path(), path);
}

TEST(MappedFile, EmptyFileHasNoBytes) {
  const std::string path = Temp("empty");
  std::ofstream(path, std::ios::binary).flush();
  absl::StatusOr<MappedFile> f = MappedFile::Open(path);
  ASSERT_THAT(f.status(), IsOk());
  EXPECT_EQ(f->size(), 0u);
}

TEST(MappedFile, MissingFileDeviceAndDirectoryAreRefusedByName) {
  EXPECT_THAT(MappedFile::Open(Temp("missing")).status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing: no such file")));
  EXPECT_THAT(
      MappedFile::Open("/dev/zero").status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("/dev/zero is not a regular file")));
  EXPECT_THAT(MappedFile::Open(std::getenv("TEST_TMPDIR")).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is not a regular file")));
}

TEST(CheckFitsInMemory, SaysWhatNeedsHowMuchAndWhatThereIs) {
  EXPECT_THAT(CheckFitsInMemory("x", 10, 10), IsOk());
  EXPECT_THAT(
      CheckFitsInMemory("shard s.bin", uint64_t{20} << 30, uint64_t{8} << 30),
      StatusIs(absl::StatusCode::kResourceExhausted,
               HasSubstr("shard s.bin needs 20.0 GiB of memory but only 8.0 GiB is available")));
  EXPECT_GT(AvailableMemoryBytes(), 0u);
}

}  // namespace
}  // namespace stagehand::runtime
