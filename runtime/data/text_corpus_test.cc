// Tests for the byte corpus: folders, binary files skipped, errors, deterministic windows.
#include "runtime/data/text_corpus.h"

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"

namespace stagehand::runtime {
namespace {
namespace fs = std::filesystem;

fs::path TempDir(const std::string& name) {
  fs::path dir = fs::path(testing::TempDir()) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

void Write(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary) << bytes;
}

TEST(TextCorpusTest, FolderConcatenatesTextFilesInOrderSkippingBinary) {
  fs::path dir = TempDir("corpus");
  Write(dir / "b.txt", "world");
  Write(dir / "a.txt", "hello ");
  Write(dir / "a.dat", std::string("\0\1\2", 3));
  fs::create_symlink(dir / "a.txt", dir / "a.u8");
  auto text = ReadTextPath(dir.string());
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, "hello world");
}

TEST(TextCorpusTest, MissingAndEmptyPathsAreClearErrors) {
  auto missing = ReadTextPath("/no/such/path");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("/no/such/path"), std::string::npos);
  fs::path dir = TempDir("empty");
  auto empty = ReadTextPath(dir.string());
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(empty.status().message().find("empty corpus"), std::string::npos);
}

TEST(TextCorpusTest, TooSmallCorpusNamesTheSizes) {
  fs::path dir = TempDir("small");
  Write(dir / "x.txt", "tiny text");
  auto corpus = LoadByteCorpus(dir.string(), 0.1, 65);
  EXPECT_EQ(corpus.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(corpus.status().message().find("too small"), std::string::npos);
}

TEST(TextCorpusTest, SplitHoldsOutTheTail) {
  fs::path dir = TempDir("split");
  std::string text(1000, 'a');
  text.replace(900, 100, std::string(100, 'z'));
  Write(dir / "x.txt", text);
  auto corpus = LoadByteCorpus(dir.string(), 0.1, 10);
  ASSERT_TRUE(corpus.ok());
  EXPECT_EQ(corpus->train.size(), 900u);
  EXPECT_EQ(corpus->validation.size(), 100u);
  EXPECT_EQ(corpus->validation[0], 'z');
}

TEST(TextCorpusTest, WindowsAreDeterministicAndShiftedByOne) {
  std::vector<int32_t> data(500);
  for (int i = 0; i < 500; ++i) data[i] = i % 256;
  WindowSampler a(&data, 2, 16, 9), b(&data, 2, 16, 9), c(&data, 2, 16, 10);
  std::vector<int32_t> ta(32), ya(32), tb(32), yb(32), tc(32), yc(32);
  a.Sample(3, 1, ta.data(), ya.data());
  b.Sample(3, 1, tb.data(), yb.data());
  c.Sample(3, 1, tc.data(), yc.data());
  EXPECT_EQ(ta, tb);
  EXPECT_EQ(ya, yb);
  EXPECT_NE(ta, tc);
  for (int i = 0; i < 15; ++i) EXPECT_EQ(ya[i], ta[i + 1]);
}

}  // namespace
}  // namespace stagehand::runtime
