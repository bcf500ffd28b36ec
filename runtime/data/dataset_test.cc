// Tests for LoadDataset: formats, packing, the held-out split, vocabulary checks, the cache.
#include "runtime/data/dataset.h"

#include <filesystem>
#include <fstream>
#include <set>

#include "gtest/gtest.h"
#include "runtime/data/llmc_shard.h"
#include "runtime/data/megatron_indexed.h"

namespace stagehand::runtime {
namespace {
namespace fs = std::filesystem;

fs::path TempDir(const std::string& name) {
  fs::path dir = fs::path(testing::TempDir()) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string Text(int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s.push_back(static_cast<char>('a' + i % 26));
  return s;
}

TEST(PackSequencesTest, WindowsOfTPlusOneOverlapByOneToken) {
  EXPECT_EQ(PackSequences(10, 3), (std::vector<int64_t>{0, 3, 6}));  // last window [6, 9]
  EXPECT_EQ(PackSequences(9, 3), (std::vector<int64_t>{0, 3}));
  EXPECT_TRUE(PackSequences(3, 3).empty());
}

TEST(LoadDatasetTest, TextFolderWithBytesSplitsSequencesDeterministically) {
  fs::path dir = TempDir("text");
  std::ofstream(dir / "a.txt") << Text(5000);
  std::ofstream(dir / "b.txt") << Text(5001);
  DatasetOptions o;
  o.path = dir.string();
  o.seq_len = 16;
  ByteTokenizer bytes;
  absl::StatusOr<Dataset> d = LoadDataset(o, bytes);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->format, "text");
  EXPECT_EQ(d->num_tokens, 10001);
  EXPECT_EQ(d->train.tokens, d->validation.tokens);
  const size_t total = d->train.starts.size() + d->validation.starts.size();
  EXPECT_EQ(total, PackSequences(10001, 16).size());
  EXPECT_NEAR(double(d->validation.starts.size()) / total, 0.1, 0.03);
  std::set<int64_t> train(d->train.starts.begin(), d->train.starts.end());
  for (int64_t s : d->validation.starts) EXPECT_EQ(train.count(s), 0u);
  absl::StatusOr<Dataset> again = LoadDataset(o, bytes);
  EXPECT_EQ(again->validation.starts, d->validation.starts);
}

TEST(LoadDatasetTest, ReadsMegatronAndLlmcDataAndAHeldOutPath) {
  fs::path dir = TempDir("formats");
  std::vector<int32_t> tokens(3000);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = i % 200;
  ASSERT_TRUE(WriteMegatronIndexed((dir / "mega").string(), {tokens}, MegatronDtype::kUint16).ok());
  ASSERT_TRUE(WriteLlmcShard((dir / "val.bin").string(), std::vector<int32_t>(500, 9)).ok());
  fs::create_directories(dir / "shards");
  ASSERT_TRUE(WriteLlmcShard((dir / "shards" / "s_000.bin").string(), tokens).ok());
  ASSERT_TRUE(WriteLlmcShard((dir / "shards" / "s_001.bin").string(), tokens).ok());
  ByteTokenizer bytes;
  DatasetOptions o;
  o.seq_len = 32;
  o.path = (dir / "mega.bin").string();
  o.validation_path = (dir / "val.bin").string();
  absl::StatusOr<Dataset> mega = LoadDataset(o, bytes);
  ASSERT_TRUE(mega.ok()) << mega.status();
  EXPECT_EQ(mega->format, "megatron");
  EXPECT_EQ(mega->train.starts, PackSequences(3000, 32));
  EXPECT_EQ(mega->validation.starts, PackSequences(500, 32));
  EXPECT_EQ((*mega->validation.tokens)[0], 9);
  o.path = (dir / "shards").string();
  o.validation_path.clear();
  absl::StatusOr<Dataset> llmc = LoadDataset(o, bytes);
  ASSERT_TRUE(llmc.ok()) << llmc.status();
  EXPECT_EQ(llmc->format, "llmc");
  EXPECT_EQ(llmc->num_tokens, 6000);
}

TEST(LoadDatasetTest, DocumentsComeFromMegatronDocumentsAndTextFiles) {
  fs::path dir = TempDir("documents");
  const std::vector<std::vector<int32_t>> docs = {
      std::vector<int32_t>(300, 1), std::vector<int32_t>(500, 2), std::vector<int32_t>(200, 3)};
  ASSERT_TRUE(WriteMegatronIndexed((dir / "mega").string(), docs, MegatronDtype::kUint16).ok());
  std::ofstream(dir / "a.txt") << Text(700);
  std::ofstream(dir / "b.txt") << Text(900);
  ByteTokenizer bytes;
  DatasetOptions o;
  o.seq_len = 16;
  o.path = (dir / "mega").string();
  absl::StatusOr<Dataset> stream = LoadDataset(o, bytes);
  ASSERT_TRUE(stream.ok()) << stream.status();
  EXPECT_EQ(stream->train.documents, nullptr);  // --packing=stream: no documents
  o.packing = Packing::kDocuments;
  absl::StatusOr<Dataset> mega = LoadDataset(o, bytes);
  ASSERT_TRUE(mega.ok()) << mega.status();
  ASSERT_NE(mega->train.documents, nullptr);
  EXPECT_EQ(*mega->train.documents, (std::vector<int64_t>{0, 300, 800}));
  EXPECT_EQ(mega->validation.documents, mega->train.documents);
  EXPECT_NE(mega->description.find("3 documents packed"), std::string::npos) << mega->description;
  EXPECT_TRUE(MakeSampler(mega->train, 2, 16, 1, 1).has_documents());
  o.path = dir.string() + "/a.txt";
  o.validation_path = dir.string() + "/b.txt";
  absl::StatusOr<Dataset> text = LoadDataset(o, bytes);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text->train.documents, (std::vector<int64_t>{0}));
  EXPECT_EQ(*text->validation.documents, (std::vector<int64_t>{0}));
  o.validation_path.clear();
  o.path = dir.string();  // a folder: a.txt, b.txt and the Megatron files (skipped as binary)
  absl::StatusOr<Dataset> folder = LoadDataset(o, bytes);
  ASSERT_TRUE(folder.ok()) << folder.status();
  EXPECT_EQ(*folder->train.documents, (std::vector<int64_t>{0, 700}));
  std::ofstream(dir / "c.txt") << "one\n%\ntwo\n%\n" << Text(400) << "\n%\n";
  o.path = dir.string() + "/c.txt";
  o.document_separator = "\n%\n";
  absl::StatusOr<Dataset> fortunes = LoadDataset(o, bytes);
  ASSERT_TRUE(fortunes.ok()) << fortunes.status();
  EXPECT_EQ(*fortunes->train.documents, (std::vector<int64_t>{0, 6, 12}));  // none at the end
  o.packing = Packing::kStream;
  EXPECT_NE(LoadDataset(o, bytes).status().message().find("--document_separator needs"),
            std::string::npos);
  EXPECT_EQ(ParsePacking("rows").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*ParsePacking("documents"), Packing::kDocuments);
}

TEST(LoadDatasetTest, TokenIdsPastTheVocabularyAreAClearError) {
  fs::path dir = TempDir("vocab");
  std::vector<int32_t> tokens(1000, 5);
  tokens[777] = 50000;
  ASSERT_TRUE(WriteLlmcShard((dir / "x.bin").string(), tokens).ok());
  DatasetOptions o;
  o.path = (dir / "x.bin").string();
  absl::Status s = LoadDataset(o, ByteTokenizer()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("token id 50000 at position 777"), std::string::npos) << s;
  EXPECT_NE(s.message().find("past the vocabulary of 256"), std::string::npos) << s;
}

TEST(LoadDatasetTest, BadDataAndTinyCorporaAreErrors) {
  fs::path dir = TempDir("bad");
  ASSERT_TRUE(WriteMegatronIndexed((dir / "m").string(), {{1, 2, 3}}, MegatronDtype::kUint8).ok());
  fs::resize_file(dir / "m.idx", 40);
  DatasetOptions o;
  o.path = (dir / "m").string();
  EXPECT_EQ(LoadDataset(o, ByteTokenizer()).status().code(), absl::StatusCode::kDataLoss);
  std::ofstream(dir / "tiny.txt") << "tiny";
  o.path = (dir / "tiny.txt").string();
  absl::Status s = LoadDataset(o, ByteTokenizer()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("each split needs at least one"), std::string::npos) << s;
  o.format = "parquet";
  EXPECT_NE(LoadDataset(o, ByteTokenizer()).status().message().find("unknown data format"),
            std::string::npos);
}

// Byte tokens with a vocabulary of 300 and an end-of-text token: cacheable, unlike bytes.
class CountingTokenizer : public Tokenizer {
 public:
  std::string name() const override { return "counting"; }
  int vocab_size() const override { return 300; }
  int32_t end_of_text() const override { return 299; }
  std::string fingerprint() const override { return "counting-v1"; }
  std::vector<int32_t> Encode(absl::string_view text) const override {
    ++calls;
    return ByteTokenizer().Encode(text);
  }
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t>) const override { return ""; }
  mutable int calls = 0;
};

TEST(LoadDatasetTest, TextIsTokenisedOnceThenReadFromTheCache) {
  fs::path dir = TempDir("cached"), cache = TempDir("cache");
  std::ofstream(dir / "a.txt") << Text(3000);
  std::ofstream(dir / "b.txt") << Text(2000);
  DatasetOptions o;
  o.path = dir.string();
  o.cache_dir = cache.string();
  CountingTokenizer t;
  absl::StatusOr<Dataset> first = LoadDataset(o, t);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(t.calls, 2);
  EXPECT_EQ(first->num_tokens, 5002);  // an end-of-text token after each document
  EXPECT_EQ((*first->train.tokens)[3000], 299);
  absl::StatusOr<Dataset> second = LoadDataset(o, t);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(t.calls, 2);
  EXPECT_EQ(*second->train.tokens, *first->train.tokens);
  EXPECT_NE(second->description.find("cached"), std::string::npos);
  std::ofstream(dir / "b.txt") << Text(2001);  // changed contents: a new cache entry
  ASSERT_TRUE(LoadDataset(o, t).ok());
  EXPECT_EQ(t.calls, 4);
}

}  // namespace
}  // namespace stagehand::runtime
