// Tests for the byte corpus: folders, binary files skipped, errors, deterministic windows.
#include "runtime/data/text_corpus.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

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

TEST(TextCorpusTest, ACorpusTooLargeForMemoryIsNamedWithItsSize) {
  const std::string path = ::testing::TempDir() + "/huge.txt";
  { std::ofstream(path) << "x"; }
  std::filesystem::resize_file(path, kMaxTextCorpusBytes + 1);  // sparse: no disk used
  auto files = ReadTextFiles(path);
  EXPECT_EQ(files.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(files.status().message().find(std::to_string(kMaxTextCorpusBytes + 1) + " bytes"),
            std::string::npos)
      << files.status();
  std::filesystem::remove(path);
}

TEST(TextCorpusTest, VisitsEachFileMappedInOrder) {
  fs::path dir = TempDir("visit");
  Write(dir / "b.txt", "world");
  Write(dir / "a.txt", "hello ");
  Write(dir / "c.txt", "");  // empty: skipped
  std::vector<std::string> seen;
  absl::Status s =
      ForEachTextFile(dir.string(), [&](const std::string& file, absl::string_view text) {
        seen.push_back(fs::path(file).filename().string() + "=" + std::string(text));
        return absl::OkStatus();
      });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(seen, (std::vector<std::string>{"a.txt=hello ", "b.txt=world"}));
  // A visitor's error stops the walk.
  int calls = 0;
  s = ForEachTextFile(dir.string(), [&](const std::string&, absl::string_view) {
    ++calls;
    return absl::CancelledError("stop");
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(calls, 1);
}

TEST(TextCorpusTest, ANulByteInAFileReadAsTextNamesTheFileAndOffset) {
  fs::path dir = TempDir("nul");
  Write(dir / "tokens.bin", std::string("ab\0cd", 5));
  auto single = ReadTextPath((dir / "tokens.bin").string());
  EXPECT_EQ(single.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(single.status().message().find("tokens.bin has a NUL byte at offset 2"),
            std::string::npos)
      << single.status();
  // In a folder, a file whose first 4 KiB are text but which holds a NUL later is refused too
  // (one whose first 4 KiB hold a NUL is skipped as binary).
  fs::path folder = TempDir("nul_late");
  Write(folder / "late.txt", std::string(5000, 'x') + std::string(1, '\0'));
  auto late = ReadTextPath(folder.string());
  EXPECT_EQ(late.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(late.status().message().find("late.txt has a NUL byte at offset 5000"),
            std::string::npos)
      << late.status();
}

TEST(TextCorpusTest, ADeviceIsNotReadAsText) {
  auto device = ReadTextPath("/dev/zero");
  EXPECT_EQ(device.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(device.status().message().find("/dev/zero"), std::string::npos) << device.status();
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

TEST(TextCorpusTest, PackedDocumentsRestartInTheWindowAndMaskCrossingTargets) {
  std::vector<int32_t> data(100);
  for (int i = 0; i < 100; ++i) data[i] = i;
  const std::vector<int64_t> starts = {5};  // the one window: tokens 5..15
  const std::vector<int64_t> documents = {0, 10, 13, 40};
  WindowSampler sampler(&data, &starts, 1, 10, 1, 3);
  EXPECT_FALSE(sampler.has_documents());
  sampler.SetDocuments(&documents);
  ASSERT_TRUE(sampler.has_documents());
  std::vector<int32_t> tokens(10), targets(10), doc_start(10);
  std::vector<uint8_t> mask(10);
  sampler.Sample(1, 0, tokens.data(), targets.data());
  sampler.SampleDocuments(1, 0, doc_start.data(), mask.data());
  EXPECT_EQ(tokens[0], 5);
  // Tokens 5..9 continue a document begun before the window; 10..12 and 13..14 are two more.
  EXPECT_EQ(doc_start, (std::vector<int32_t>{0, 0, 0, 0, 0, 5, 5, 5, 8, 8}));
  // Targets 10 and 13 begin documents: predicted across a boundary, left out of the loss.
  EXPECT_EQ(mask, (std::vector<uint8_t>{1, 1, 1, 1, 0, 1, 1, 0, 1, 1}));
}

TEST(ShufflePositionTest, IsABijectionForEverySize) {
  for (uint64_t n : {1, 2, 3, 5, 16, 17, 100, 1000}) {
    std::vector<bool> hit(n, false);
    for (uint64_t i = 0; i < n; ++i) {
      const uint64_t j = ShufflePosition(i, n, 42);
      ASSERT_LT(j, n);
      EXPECT_FALSE(hit[j]) << "n " << n << " position " << i;
      hit[j] = true;
    }
  }
}

TEST(PackedSamplerTest, VisitsEverySequenceOncePerEpochInASeededOrder) {
  std::vector<int32_t> data(1000);
  for (int i = 0; i < 1000; ++i) data[i] = i;
  std::vector<int64_t> starts;
  for (int64_t s = 0; s + 10 < 1000; s += 10) starts.push_back(s);  // 99 sequences
  const int B = 3, T = 10, M = 3;                                   // 9 per step: 11 steps an epoch
  WindowSampler a(&data, &starts, B, T, M, 7), b(&data, &starts, B, T, M, 8);
  std::vector<int32_t> tokens(B * T), targets(B * T);
  std::vector<int> seen(1000, 0);
  std::vector<int32_t> first_a, first_b;
  for (int step = 1; step <= 11; ++step) {
    for (int mb = 0; mb < M; ++mb) {
      a.Sample(step, mb, tokens.data(), targets.data());
      for (int r = 0; r < B; ++r) {
        EXPECT_EQ(tokens[r * T] % 10, 0);
        for (int t = 0; t < T; ++t) EXPECT_EQ(targets[r * T + t], tokens[r * T + t] + 1);
        ++seen[tokens[r * T]];
        if (step == 1) first_a.push_back(tokens[r * T]);
      }
      b.Sample(step, mb, tokens.data(), targets.data());
      if (step == 1) first_b.push_back(tokens[0]);
    }
  }
  for (int64_t s : starts) EXPECT_EQ(seen[s], 1) << "sequence at " << s;
  EXPECT_DOUBLE_EQ(a.Epochs(11), 1.0);
  EXPECT_NE(first_a, first_b);
  // Step 0 (evaluation) and later epochs are valid, and a fixed (step, mb) is stable.
  a.Sample(0, 0, tokens.data(), targets.data());
  std::vector<int32_t> again(B * T);
  a.Sample(0, 0, again.data(), targets.data());
  EXPECT_EQ(tokens, again);
  a.Sample(30, 2, tokens.data(), targets.data());
}

TEST(SeqLenPolicyTest, ParsesBothPoliciesAndNamesTheFlagOtherwise) {
  EXPECT_EQ(*ParseSeqLenPolicy("fixed"), SeqLenPolicy::kFixed);
  EXPECT_EQ(*ParseSeqLenPolicy("variable"), SeqLenPolicy::kVariable);
  absl::StatusOr<SeqLenPolicy> bad = ParseSeqLenPolicy("random");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("--seq_len_policy=random"), std::string::npos);
}

TEST(SeqLenPolicyTest, TheBudgetIsValidatedAgainstThePolicyAndB) {
  EXPECT_TRUE(ValidateMicrobatchTokens(SeqLenPolicy::kFixed, 4, 64, 0).ok());
  absl::Status fixed = ValidateMicrobatchTokens(SeqLenPolicy::kFixed, 4, 64, 128);
  EXPECT_EQ(fixed.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(fixed.message().find("needs --seq_len_policy=variable"), std::string::npos);
  EXPECT_TRUE(ValidateMicrobatchTokens(SeqLenPolicy::kVariable, 4, 64, 4).ok());
  EXPECT_TRUE(ValidateMicrobatchTokens(SeqLenPolicy::kVariable, 4, 64, 1 << 20).ok());
  absl::Status small = ValidateMicrobatchTokens(SeqLenPolicy::kVariable, 4, 64, 3);
  EXPECT_EQ(small.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(small.message().find("--microbatch_tokens=3"), std::string::npos);
  EXPECT_FALSE(ValidateMicrobatchTokens(SeqLenPolicy::kVariable, 0, 64, 8).ok());
  absl::Status none = ValidateMicrobatchTokens(SeqLenPolicy::kVariable, 4, 64, 0);
  EXPECT_EQ(none.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(none.message().find("--seq_len_policy=variable needs --microbatch_tokens"),
            std::string::npos);
}

TEST(SeqLenPolicyTest, VariableLengthsCutTheFixedWindowsAndTheirDocuments) {
  std::vector<int32_t> tokens(500);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>(i % 251);
  const std::vector<int64_t> documents = {0, 3, 40, 41, 200, 333};
  WindowSampler fixed(&tokens, 3, 16, 9), variable(&tokens, 3, 16, 9);
  fixed.SetDocuments(&documents);
  variable.SetDocuments(&documents);
  variable.SetSeqLenPolicy(SeqLenPolicy::kVariable, 30);  // T_m in [1, 10]
  EXPECT_FALSE(fixed.variable_lengths());
  EXPECT_TRUE(variable.variable_lengths());
  int64_t step_tokens = 0;
  for (int mb = 0; mb < 6; ++mb) {
    const int T = variable.Length(4, mb);
    ASSERT_EQ(T, MicrobatchLength(SeqLenPolicy::kVariable, 9, 4, mb, 3, 16, 30));
    EXPECT_EQ(fixed.Length(4, mb), 16);
    step_tokens += 3 * T;
    std::vector<int32_t> ft(48), fy(48), vt(3 * T), vy(3 * T), fd(48), vd(3 * T);
    std::vector<uint8_t> fm(48), vm(3 * T);
    fixed.Sample(4, mb, ft.data(), fy.data());
    fixed.SampleDocuments(4, mb, fd.data(), fm.data());
    variable.Sample(4, mb, vt.data(), vy.data());
    variable.SampleDocuments(4, mb, vd.data(), vm.data());
    for (int b = 0; b < 3; ++b) {  // row b: the first T tokens of the same window
      for (int t = 0; t < T; ++t) {
        EXPECT_EQ(vt[b * T + t], ft[b * 16 + t]);
        EXPECT_EQ(vy[b * T + t], fy[b * 16 + t]);
        EXPECT_EQ(vd[b * T + t], fd[b * 16 + t]);
        EXPECT_EQ(vm[b * T + t], fm[b * 16 + t]);
      }
    }
  }
  EXPECT_EQ(variable.StepTokens(4, 6), step_tokens);
  EXPECT_EQ(fixed.StepTokens(4, 6), 6 * 3 * 16);
  EXPECT_EQ(DescribeMicrobatchLength(SeqLenPolicy::kFixed, 3, 16, 0), "16 tokens");
  EXPECT_EQ(DescribeMicrobatchLength(SeqLenPolicy::kVariable, 3, 16, 30),
            "T_m tokens (--seq_len_policy=variable: T_m in [1, 10], --microbatch_tokens=30)");
}

TEST(SeqLenPolicyTest, FixedIsSeqLenAndVariableIsAPureFunctionWithinTheBudget) {
  EXPECT_EQ(MicrobatchLength(SeqLenPolicy::kFixed, 7, 3, 1, 4, 64, 0), 64);
  constexpr int kB = 4, kT = 64;
  for (int64_t budget : {int64_t{4}, int64_t{100}, int64_t{256}, int64_t{1} << 20}) {
    const int longest = static_cast<int>(std::min<int64_t>(kT, budget / kB));
    std::vector<int> seen(longest + 1, 0);
    for (int64_t step = 0; step < 40; ++step) {
      for (int mb = 0; mb < 16; ++mb) {
        const int t = MicrobatchLength(SeqLenPolicy::kVariable, 7, step, mb, kB, kT, budget);
        ASSERT_GE(t, 1);
        ASSERT_LE(t, longest);
        ASSERT_LE(int64_t{kB} * t, budget);
        EXPECT_EQ(t, MicrobatchLength(SeqLenPolicy::kVariable, 7, step, mb, kB, kT, budget));
        ++seen[t];
      }
    }
    // 640 draws: both ends of the range come up, and the microbatches of a step differ.
    EXPECT_GT(seen[1], 0) << budget;
    EXPECT_GT(seen[longest], 0) << budget;
  }
  std::vector<int> step_lengths, other_seed;
  for (int mb = 0; mb < 8; ++mb) {
    step_lengths.push_back(MicrobatchLength(SeqLenPolicy::kVariable, 7, 5, mb, kB, kT, 256));
    other_seed.push_back(MicrobatchLength(SeqLenPolicy::kVariable, 8, 5, mb, kB, kT, 256));
  }
  EXPECT_NE(std::count(step_lengths.begin(), step_lengths.end(), step_lengths[0]), 8);
  EXPECT_NE(step_lengths, other_seed);
}

}  // namespace
}  // namespace stagehand::runtime
