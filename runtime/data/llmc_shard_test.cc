// Tests for llm.c shards: round trip, and truncated / wrong-magic / LLaMA-3 shards as errors.
#include "runtime/data/llmc_shard.h"

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"

namespace stagehand::runtime {
namespace {

std::string TempPath(const std::string& name) { return testing::TempDir() + "/" + name; }

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
  EXPECT_EQ(WriteLlmcShard(TempPath("big.bin"), {70000}).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace stagehand::runtime
