// Tests for the byte tokenizer and the tokenizer factory's errors.
#include "runtime/data/tokenizer.h"

#include "gtest/gtest.h"

namespace stagehand::runtime {
namespace {

TEST(ByteTokenizerTest, EveryByteRoundTrips) {
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  ByteTokenizer t;
  std::vector<int32_t> ids = t.Encode(all);
  ASSERT_EQ(ids.size(), 256u);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(ids[b], b);
  EXPECT_EQ(*t.Decode(ids), all);
  EXPECT_EQ(t.vocab_size(), 256);
  EXPECT_EQ(t.end_of_text(), -1);
}

TEST(ByteTokenizerTest, DecodeRejectsIdsPastTheVocabulary) {
  absl::StatusOr<std::string> s = ByteTokenizer().Decode({65, 256});
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("256 at position 1"), std::string::npos) << s.status();
}

TEST(MakeTokenizerTest, ByteIsTheDefault) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = MakeTokenizer({});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ((*t)->name(), "byte");
}

TEST(MakeTokenizerTest, UnknownKindAndMissingFilesAreClearErrors) {
  EXPECT_EQ(MakeTokenizer({"sentencepiece", ""}).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = MakeTokenizer({"gpt2", "/no/such/dir"});
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(t.status().message().find("fetch_gpt2_tokenizer.sh"), std::string::npos) << t.status();
}

}  // namespace
}  // namespace stagehand::runtime
