// Text corpus loading and deterministic window sampling (random offsets or packed + shuffled).
#include "runtime/data/text_corpus.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "runtime/io/mapped_file.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {
namespace fs = std::filesystem;
namespace {

bool LooksBinary(absl::string_view bytes) {
  return bytes.substr(0, 4096).find('\0') != absl::string_view::npos;
}

// Text is tokenised into memory (4 bytes a token): refuse what cannot fit with the sizes,
// instead of failing later as if the model were too large.
absl::Status CheckTextSize(const std::string& path, const fs::file_status& status) {
  std::error_code ec;
  uintmax_t total = 0;
  if (fs::is_regular_file(status)) {
    total = fs::file_size(path, ec);
  } else if (fs::is_directory(status)) {
    for (fs::recursive_directory_iterator it(path, ec), end; it != end && !ec; it.increment(ec)) {
      if (!it->is_symlink() && it->is_regular_file()) total += it->file_size(ec);
    }
  }
  if (!ec && total > kMaxTextCorpusBytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "data path ", path, " holds ", total,
        " bytes; a text corpus is tokenised into memory, at most ", kMaxTextCorpusBytes,
        " bytes (use a smaller corpus, or tokenize it into llm.c shards or a "
        "Megatron .bin/.idx)"));
  }
  return absl::OkStatus();
}

// The files of `path` that may hold text, sorted: the path itself, or a folder's regular
// files (recursively, no symbolic links).
absl::StatusOr<std::vector<std::string>> CandidateFiles(const std::string& path,
                                                        const fs::file_status& status) {
  if (fs::is_regular_file(status)) return std::vector<std::string>{path};
  if (!fs::is_directory(status)) {
    return absl::InvalidArgumentError(
        absl::StrCat("data path ", path, " is neither a file nor a folder"));
  }
  std::vector<std::string> files;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(path, ec), end; it != end && !ec; it.increment(ec)) {
    if (it->is_symlink() || !it->is_regular_file()) continue;
    files.push_back(it->path().string());
  }
  if (ec) return absl::InternalError(absl::StrCat("cannot list ", path, ": ", ec.message()));
  std::sort(files.begin(), files.end());
  return files;
}

uint64_t Mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

absl::Status ForEachTextFile(
    const std::string& path,
    const std::function<absl::Status(const std::string& file, absl::string_view text)>& visit) {
  std::error_code ec;
  fs::file_status status = fs::status(path, ec);
  if (ec || !fs::exists(status)) {
    return absl::NotFoundError(absl::StrCat("data path ", path, " does not exist"));
  }
  RETURN_IF_ERROR(CheckTextSize(path, status));
  ASSIGN_OR_RETURN(const std::vector<std::string> files, CandidateFiles(path, status));
  const bool folder = fs::is_directory(status);
  int visited = 0;
  for (const std::string& file : files) {
    ASSIGN_OR_RETURN(const MappedFile mapped, MappedFile::Open(file));
    const absl::string_view text = mapped.bytes();
    if (folder && (text.empty() || LooksBinary(text))) continue;  // e.g. fortune's .dat files
    if (const size_t nul = text.find('\0'); nul != absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "data file ", file, " has a NUL byte at offset ", nul,
          ": it is not text (a tokenised corpus is read with --data_format=llmc or megatron)"));
    }
    if (text.empty()) continue;
    RETURN_IF_ERROR(visit(file, text));
    ++visited;
  }
  if (visited == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("data path ", path, " holds no text (empty corpus)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ReadTextFiles(
    const std::string& path) {
  std::vector<std::pair<std::string, std::string>> out;
  RETURN_IF_ERROR(ForEachTextFile(path, [&](const std::string& file, absl::string_view text) {
    out.emplace_back(file, std::string(text));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::string> ReadTextPath(const std::string& path) {
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> files = ReadTextFiles(path);
  if (!files.ok()) return files.status();
  std::string text;
  for (const auto& [name, bytes] : *files) text += bytes;
  return text;
}

absl::StatusOr<Corpus> LoadByteCorpus(const std::string& path, double validation_fraction,
                                      int64_t min_tokens) {
  if (!(validation_fraction > 0.0 && validation_fraction < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("validation fraction ", validation_fraction, " must be in (0, 1)"));
  }
  absl::StatusOr<std::string> text = ReadTextPath(path);
  if (!text.ok()) return text.status();
  const int64_t n = static_cast<int64_t>(text->size());
  const int64_t n_val = static_cast<int64_t>(n * validation_fraction);
  Corpus corpus;
  corpus.train.reserve(n - n_val);
  corpus.validation.reserve(n_val);
  for (int64_t i = 0; i < n; ++i) {
    int32_t token = static_cast<unsigned char>((*text)[i]);
    (i < n - n_val ? corpus.train : corpus.validation).push_back(token);
  }
  if (static_cast<int64_t>(corpus.validation.size()) < min_tokens ||
      static_cast<int64_t>(corpus.train.size()) < min_tokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("corpus at ", path, " has ", n, " bytes: too small for windows of ",
                     min_tokens, " tokens in both the training part and the held-out ",
                     validation_fraction * 100, "% (use a larger corpus or a smaller --seq_len)"));
  }
  return corpus;
}

WindowSampler::WindowSampler(const std::vector<int32_t>* tokens, int micro_batch_size, int seq_len,
                             uint64_t seed)
    : data_(tokens), B_(micro_batch_size), T_(seq_len), seed_(seed) {}

WindowSampler::WindowSampler(const std::vector<int32_t>* tokens, const std::vector<int64_t>* starts,
                             int micro_batch_size, int seq_len, int num_microbatches, uint64_t seed)
    : data_(tokens),
      starts_(starts),
      B_(micro_batch_size),
      T_(seq_len),
      M_(num_microbatches),
      seed_(seed) {}

uint64_t ShufflePosition(uint64_t position, uint64_t n, uint64_t key) {
  // Balanced Feistel network on 2 * half bits (a bijection of [0, 4^half) with 4^half < 4n),
  // applied again while the result is >= n: a bijection of [0, n).
  int half = 1;
  while ((uint64_t{1} << (2 * half)) < n) ++half;
  const uint64_t mask = (uint64_t{1} << half) - 1;
  uint64_t x = position;
  do {
    uint64_t left = x >> half, right = x & mask;
    for (uint64_t round = 0; round < 4; ++round) {
      const uint64_t next = left ^ (Mix(key ^ Mix(right + (round << 56))) & mask);
      left = right;
      right = next;
    }
    x = (left << half) | right;
  } while (x >= n);
  return x;
}

double WindowSampler::Epochs(int64_t step) const {
  if (starts_ == nullptr || starts_->empty()) return 0.0;
  if (step >= 0 && step + 1 < static_cast<int64_t>(first_.size())) {
    return double(first_[step + 1]) * B_ / double(starts_->size());
  }
  return double(step) * M_ * B_ / double(starts_->size());
}

int64_t WindowSampler::RowStart(int64_t step, int microbatch, int b) const {
  if (starts_ != nullptr) {
    const int64_t n = static_cast<int64_t>(starts_->size());
    const int64_t first =
        step >= 0 && step < static_cast<int64_t>(first_.size()) ? first_[step] : (step - 1) * M_;
    const int64_t index = (first + microbatch) * int64_t{B_} + b;
    const int64_t epoch = index >= 0 ? index / n : -1 - (-index - 1) / n;  // floor
    const uint64_t position = static_cast<uint64_t>(index - epoch * n);
    const uint64_t key = Mix(seed_ ^ Mix(static_cast<uint64_t>(epoch) + 0xE90C5ull));
    return (*starts_)[ShufflePosition(position, n, key)];
  }
  const uint64_t range = data_->size() - static_cast<uint64_t>(T_);  // start in [0, n-T-1]
  const uint64_t key = Mix(seed_ ^ Mix(static_cast<uint64_t>(step) * 1000003u + microbatch) ^
                           Mix(static_cast<uint64_t>(b) + 0x51ED27ull));
  return static_cast<int64_t>(key % range);
}

int WindowSampler::Length(int64_t step, int microbatch) const {
  return MicrobatchLength(policy_, seed_, step, microbatch, B_, T_, microbatch_tokens_);
}

int64_t WindowSampler::StepTokens(int64_t step, int microbatches) const {
  int64_t tokens = 0;
  for (int mb = 0; mb < microbatches; ++mb) tokens += int64_t{B_} * Length(step, mb);
  return tokens;
}

void WindowSampler::Sample(int64_t step, int microbatch, int32_t* tokens, int32_t* targets) const {
  const int T = Length(step, microbatch);
  for (int b = 0; b < B_; ++b) {
    const int64_t start = RowStart(step, microbatch, b);
    for (int t = 0; t < T; ++t) {
      tokens[int64_t{b} * T + t] = (*data_)[start + t];
      targets[int64_t{b} * T + t] = (*data_)[start + t + 1];
    }
  }
}

void WindowSampler::SampleDocuments(int64_t step, int microbatch, int32_t* doc_start,
                                    uint8_t* loss_mask) const {
  const std::vector<int64_t>& docs = *documents_;
  const int T = Length(step, microbatch);
  for (int b = 0; b < B_; ++b) {
    const int64_t start = RowStart(step, microbatch, b);
    // The first document that begins after the window's first token.
    auto next = std::upper_bound(docs.begin(), docs.end(), start);
    int32_t current = 0;
    for (int t = 0; t < T; ++t) {
      if (next != docs.end() && *next == start + t) {
        current = t;
        ++next;
      }
      doc_start[int64_t{b} * T + t] = current;
      const bool boundary = next != docs.end() && *next == start + t + 1;
      loss_mask[int64_t{b} * T + t] = boundary ? 0 : 1;
    }
  }
}

absl::StatusOr<SeqLenPolicy> ParseSeqLenPolicy(const std::string& text) {
  if (text == "fixed") return SeqLenPolicy::kFixed;
  if (text == "variable") return SeqLenPolicy::kVariable;
  return absl::InvalidArgumentError(
      absl::StrCat("--seq_len_policy=", text, ": choose fixed or variable"));
}

absl::Status ValidateMicrobatchTokens(SeqLenPolicy policy, int micro_batch_size, int seq_len,
                                      int64_t microbatch_tokens) {
  if (policy == SeqLenPolicy::kFixed) {
    if (microbatch_tokens == 0) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat("--microbatch_tokens=", microbatch_tokens,
                                                   " needs --seq_len_policy=variable"));
  }
  if (micro_batch_size < 1 || seq_len < 1) {
    return absl::InvalidArgumentError(absl::StrCat("--seq_len_policy=variable needs B >= 1 and ",
                                                   "--seq_len >= 1, not B=", micro_batch_size,
                                                   " and --seq_len=", seq_len));
  }
  if (microbatch_tokens == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--seq_len_policy=variable needs --microbatch_tokens, the token budget of a microbatch "
        "(at least --micro_batch_size=",
        micro_batch_size, "; B x --seq_len = ", int64_t{micro_batch_size} * seq_len,
        " lets T_m reach --seq_len)"));
  }
  if (microbatch_tokens < micro_batch_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("--microbatch_tokens=", microbatch_tokens, " is below the micro batch size ",
                     micro_batch_size, ": each of its rows needs at least one token"));
  }
  return absl::OkStatus();
}

std::string DescribeMicrobatchLength(SeqLenPolicy policy, int micro_batch_size, int seq_len,
                                     int64_t microbatch_tokens) {
  if (policy == SeqLenPolicy::kFixed) return absl::StrCat(seq_len, " tokens");
  const int64_t longest = std::max<int64_t>(
      1, std::min<int64_t>(seq_len, microbatch_tokens / std::max(micro_batch_size, 1)));
  return absl::StrCat("T_m tokens (--seq_len_policy=variable: T_m in [1, ", longest,
                      "], --microbatch_tokens=", microbatch_tokens, ")");
}

int MicrobatchLength(SeqLenPolicy policy, uint64_t seed, int64_t step, int microbatch,
                     int micro_batch_size, int seq_len, int64_t microbatch_tokens) {
  if (policy == SeqLenPolicy::kFixed) return seq_len;
  const int64_t longest =
      std::min<int64_t>(seq_len, microbatch_tokens / std::max(micro_batch_size, 1));
  if (longest <= 1) return 1;
  const uint64_t key =
      Mix(seed ^ Mix(static_cast<uint64_t>(step) + 0x5E0C1E4ull) ^
          Mix(static_cast<uint64_t>(static_cast<uint32_t>(microbatch)) + 0x7A41E9ull));
  return 1 + static_cast<int>(key % static_cast<uint64_t>(longest));
}

}  // namespace stagehand::runtime
