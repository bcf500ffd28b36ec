// Tests for llm.c shards: round trip, and truncated / wrong-magic / LLaMA-3 shards as errors.
#include "runtime/data/llmc_shard.h"

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::runtime {
namespace {

std::string TempPath(const std::string& name) { return ::testing::TempDir() + "/" + name; }

TEST(LlmcShardTest, WrittenShardsReadBackAndAppend) {
  const std::string path = TempPath("a.bin");
  ASSERT_TRUE(WriteLlmcShard(path, {50256, 0, 65535, 7}).ok());
  EXPECT_TRUE(LooksLikeLlmcShard(path));
  EXPECT_EQ(std::filesystem::file_size(path), 1024u + 8u);
  std::vector<int32_t> tokens = {1};
  ASSERT_TRUE(AppendLlmcShard(path, &tokens).ok());
  EXPECT_EQ(tokens, (std::vector<int32_t>{1, 50256, 0, 65535, 7}));
}

TEST(LlmcShardTest, TruncatedShardIsDataLossNamingTheSizes) {
  const std::string path = TempPath("t.bin");
  ASSERT_TRUE(WriteLlmcShard(path, std::vector<int32_t>(100, 3)).ok());
  std::filesystem::resize_file(path, 1024 + 150);
  std::vector<int32_t> tokens;
  absl::Status s = AppendLlmcShard(path, &tokens);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("header says 100 tokens"), std::string::npos) << s;
  std::filesystem::resize_file(path, 10);
  EXPECT_NE(AppendLlmcShard(path, &tokens).message().find("1024-byte header"), std::string::npos);
}

TEST(LlmcShardTest, WrongMagicAndLlama3ShardsAreRejected) {
  const std::string path = TempPath("m.bin");
  int32_t header[256] = {12345, 1, 0};
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<char*>(header), sizeof(header));
  std::vector<int32_t> tokens;
  EXPECT_NE(AppendLlmcShard(path, &tokens).message().find("wrong magic 12345"), std::string::npos);
  EXPECT_FALSE(LooksLikeLlmcShard(path));
  header[0] = 20240801;
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<char*>(header), sizeof(header));
  EXPECT_NE(AppendLlmcShard(path, &tokens).message().find("LLaMA-3"), std::string::npos);
  header[0] = kLlmcShardMagic;
  header[1] = 2;
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<char*>(header), sizeof(header));
  EXPECT_NE(AppendLlmcShard(path, &tokens).message().find("version 2"), std::string::npos);
}

TEST(LlmcShardTest, TokensThatDoNotFitUint16AreRefused) {
  EXPECT_EQ(WriteLlmcShard(TempPath("big.bin"), {70000}).code(),
            absl::StatusCode::kInvalidArgument);
}

// Issue 18: a 20 GB data file died with a generic "out of memory: this model..." after reading
// the whole file into memory. Now the shard is mapped, its size checked against its header,
// and its tokens' memory against what is available, before anything is allocated.
TEST(LlmcShardTest, AShardTooLargeForMemoryIsRefusedNamingItAndTheSizes) {
  const std::string path = TempPath("huge.bin");
  ASSERT_TRUE(WriteLlmcShard(path, {1, 2}).ok());
  {
    std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
    const int32_t count = INT32_MAX;
    f.seekp(8);
    f.write(reinterpret_cast<const char*>(&count), sizeof(count));
  }
  std::filesystem::resize_file(path, 1024 + uint64_t{INT32_MAX} * 2);  // sparse: 4 GiB, no disk
  std::vector<int32_t> tokens = {5};
  EXPECT_THAT(
      AppendLlmcShard(path, &tokens, /*memory_limit=*/uint64_t{1} << 30),
      stagehand::testing::StatusIs(
          absl::StatusCode::kResourceExhausted,
          ::testing::HasSubstr("llm.c shard " + path +
                               " (4294968318 bytes on disk) holds 2147483647 "
                               "tokens; reading them needs 8.0 GiB of memory but only 1.0 GiB is "
                               "available")));
  EXPECT_EQ(tokens, std::vector<int32_t>{5});  // nothing appended
}

TEST(LlmcShardTest, ADeviceOrDirectoryIsRefusedRatherThanReadForever) {
  std::vector<int32_t> tokens;
  EXPECT_THAT(
      AppendLlmcShard("/dev/zero", &tokens),
      stagehand::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                   ::testing::HasSubstr("/dev/zero is not a regular file")));
  EXPECT_THAT(AppendLlmcShard(::testing::TempDir(), &tokens),
              stagehand::testing::StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(tokens.empty());
}

}  // namespace
}  // namespace stagehand::runtime
