// Tests for Megatron indexed datasets: round trip per dtype, the exact .idx layout, and
// truncated / wrong-magic / float / out-of-range files as errors.
#include "runtime/data/megatron_indexed.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "gtest/gtest.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::runtime {
namespace {

std::string Prefix(const std::string& name) { return ::testing::TempDir() + "/" + name; }

std::string Bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

const std::vector<std::vector<int32_t>> kDocs = {{1, 2, 3}, {}, {250, 0}, {7}};

TEST(MegatronIndexedTest, RoundTripsEveryIntegerDtype) {
  for (MegatronDtype dtype : {MegatronDtype::kUint8, MegatronDtype::kUint16, MegatronDtype::kInt32,
                              MegatronDtype::kInt64, MegatronDtype::kInt16}) {
    const std::string prefix = Prefix("ds" + std::to_string(int(dtype)));
    ASSERT_TRUE(WriteMegatronIndexed(prefix, kDocs, dtype).ok());
    for (const std::string& path : {prefix, prefix + ".idx", prefix + ".bin"}) {
      EXPECT_TRUE(LooksLikeMegatronIndexed(path));
      absl::StatusOr<MegatronIndexedDataset> d = ReadMegatronIndexed(path);
      ASSERT_TRUE(d.ok()) << d.status();
      EXPECT_EQ(d->tokens, (std::vector<int32_t>{1, 2, 3, 250, 0, 7}));
      EXPECT_EQ(d->sequence_starts, (std::vector<int64_t>{0, 3, 3, 5, 6}));
      EXPECT_EQ(d->doc_idx, (std::vector<int64_t>{0, 1, 2, 3, 4}));
    }
  }
}

TEST(MegatronIndexedTest, IndexHasMegatronsLayout) {
  const std::string prefix = Prefix("layout");
  ASSERT_TRUE(WriteMegatronIndexed(prefix, {{5, 6}, {7}}, MegatronDtype::kUint16).ok());
  const std::string idx = Bytes(prefix + ".idx");
  ASSERT_EQ(idx.size(), 34u + 2 * 4 + 2 * 8 + 3 * 8);
  EXPECT_EQ(idx.substr(0, 9), std::string("MMIDIDX\0\0", 9));
  uint64_t version, count, docs;
  std::memcpy(&version, idx.data() + 9, 8);
  std::memcpy(&count, idx.data() + 18, 8);
  std::memcpy(&docs, idx.data() + 26, 8);
  EXPECT_EQ(version, 1u);
  EXPECT_EQ(idx[17], 8);  // uint16
  EXPECT_EQ(count, 2u);
  EXPECT_EQ(docs, 3u);
  int32_t sizes[2];
  int64_t pointers[2];
  std::memcpy(sizes, idx.data() + 34, 8);
  std::memcpy(pointers, idx.data() + 42, 16);
  EXPECT_EQ(sizes[0], 2);
  EXPECT_EQ(sizes[1], 1);
  EXPECT_EQ(pointers[1], 4);  // bytes
  EXPECT_EQ(Bytes(prefix + ".bin"), std::string("\5\0\6\0\7\0", 6));
}

TEST(MegatronIndexedTest, TruncatedIndexIsDataLoss) {
  const std::string prefix = Prefix("trunc");
  ASSERT_TRUE(WriteMegatronIndexed(prefix, kDocs, MegatronDtype::kUint16).ok());
  std::filesystem::resize_file(prefix + ".idx", std::filesystem::file_size(prefix + ".idx") - 5);
  absl::Status s = ReadMegatronIndexed(prefix).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("truncated"), std::string::npos) << s;
  EXPECT_NE(s.message().find(prefix + ".idx"), std::string::npos) << s;
  std::filesystem::resize_file(prefix + ".idx", 20);
  EXPECT_NE(ReadMegatronIndexed(prefix).status().message().find("34-byte header"),
            std::string::npos);
}

TEST(MegatronIndexedTest, WrongMagicVersionAndFloatDtypeAreDataLoss) {
  const std::string prefix = Prefix("magic");
  ASSERT_TRUE(WriteMegatronIndexed(prefix, kDocs, MegatronDtype::kUint16).ok());
  std::string idx = Bytes(prefix + ".idx");
  auto rewrite = [&](size_t at, char value) {
    std::string copy = idx;
    copy[at] = value;
    std::ofstream(prefix + ".idx", std::ios::binary) << copy;
    return ReadMegatronIndexed(prefix).status();
  };
  EXPECT_NE(rewrite(0, 'X').message().find("wrong magic"), std::string::npos);
  EXPECT_NE(rewrite(9, 2).message().find("version 2"), std::string::npos);
  EXPECT_NE(rewrite(17, 7).message().find("dtype code 7"), std::string::npos);
}

TEST(MegatronIndexedTest, PointersPastTheBinFileAreDataLoss) {
  const std::string prefix = Prefix("short_bin");
  ASSERT_TRUE(WriteMegatronIndexed(prefix, kDocs, MegatronDtype::kInt32).ok());
  std::filesystem::resize_file(prefix + ".bin", 8);
  absl::Status s = ReadMegatronIndexed(prefix).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("lies outside"), std::string::npos) << s;
}

TEST(MegatronIndexedTest, MissingFilesAreNotFound) {
  EXPECT_EQ(ReadMegatronIndexed(Prefix("none")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(LooksLikeMegatronIndexed(Prefix("none")));
}

// Issue 18: a dataset larger than memory is refused naming it and the sizes, before its tokens
// are read (the files are mapped, not read whole).
TEST(MegatronIndexedTest, ADatasetTooLargeForMemoryIsRefusedNamingItAndTheSizes) {
  const std::string prefix = Prefix("huge");
  ASSERT_TRUE(WriteMegatronIndexed(prefix, kDocs, MegatronDtype::kUint8).ok());
  {  // every sequence: 2e9 uint8 tokens from byte 0 of a sparse 2 GB .bin
    std::fstream f(prefix + ".idx", std::ios::binary | std::ios::in | std::ios::out);
    for (size_t s = 0; s < kDocs.size(); ++s) {
      const int32_t size = 2000000000;
      const int64_t pointer = 0;
      f.seekp(34 + 4 * s);
      f.write(reinterpret_cast<const char*>(&size), 4);
      f.seekp(34 + 4 * kDocs.size() + 8 * s);
      f.write(reinterpret_cast<const char*>(&pointer), 8);
    }
  }
  std::filesystem::resize_file(prefix + ".bin", 2000000000);
  EXPECT_THAT(ReadMegatronIndexed(prefix, /*memory_limit=*/uint64_t{1} << 30).status(),
              stagehand::testing::StatusIs(
                  absl::StatusCode::kResourceExhausted,
                  ::testing::HasSubstr(
                      "Megatron indexed dataset " + prefix +
                      " (2000000000 bytes on disk) "
                      "holds 8000000000 tokens in 4 sequences; reading them needs 29.8 GiB "
                      "of memory but only 1.0 GiB is available")));
}

TEST(MegatronIndexedTest, ABinThatIsNotARegularFileIsRefused) {
  const std::string prefix = Prefix("device");
  ASSERT_TRUE(WriteMegatronIndexed(prefix, kDocs, MegatronDtype::kInt32).ok());
  std::filesystem::remove(prefix + ".bin");
  std::filesystem::create_symlink("/dev/zero", prefix + ".bin");
  EXPECT_THAT(ReadMegatronIndexed(prefix).status(),
              stagehand::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                           ::testing::HasSubstr(".bin is not a regular file")));
}

}  // namespace
}  // namespace stagehand::runtime
