// Dataset loading: format detection, the tokenised-text cache, vocabulary checks, packing
// and the held-out split.
#include "runtime/data/dataset.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/data/llmc_shard.h"
#include "runtime/data/megatron_indexed.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {
namespace fs = std::filesystem;
namespace {

struct Stream {
  std::string format;
  std::string description;
  std::vector<int32_t> tokens;
  std::vector<int64_t> documents;  // sorted offsets into tokens where a document begins
};

// Documents delimited by `end_of_text` tokens: one begins at 0 and, when `after` (text files,
// where the tokenizer appends it), after each end-of-text token, else (llm.c shards, which
// put it before each document) at each.
std::vector<int64_t> DocumentsAt(const std::vector<int32_t>& tokens, int32_t end_of_text,
                                 bool after) {
  std::vector<int64_t> docs = {0};
  const int64_t n = static_cast<int64_t>(tokens.size());
  for (int64_t i = 0; i < n; ++i) {
    if (tokens[i] != end_of_text) continue;
    const int64_t begin = after ? i + 1 : i;
    if (begin > docs.back() && begin < n) docs.push_back(begin);
  }
  return docs;
}

uint64_t Fnv1a(absl::string_view bytes, uint64_t h) {
  for (unsigned char c : bytes) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

uint64_t Mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::string ResolveFormat(const std::string& path, const std::string& format) {
  if (format != "auto") return format;
  std::error_code ec;
  if (LooksLikeMegatronIndexed(path)) return "megatron";
  if (fs::is_regular_file(path, ec)) return LooksLikeLlmcShard(path) ? "llmc" : "text";
  if (fs::is_directory(path, ec)) {
    for (const fs::directory_entry& e : fs::directory_iterator(path, ec)) {
      if (e.is_regular_file() && e.path().extension() == ".bin" &&
          LooksLikeLlmcShard(e.path().string())) {
        return "llmc";
      }
    }
  }
  return "text";
}

// Two passes over the mapped files (text_corpus.h), neither holding the text in memory: the
// cache key, then (unless cached) the tokens, file by file.
absl::StatusOr<Stream> ReadText(const std::string& path, const Tokenizer& tokenizer,
                                const std::string& cache_dir, const std::string& separator) {
  Stream s;
  s.format = "text";
  uint64_t key = Fnv1a(tokenizer.fingerprint(), 0xcbf29ce484222325ull);
  int64_t bytes = 0;
  int num_files = 0;
  RETURN_IF_ERROR(ForEachTextFile(path, [&](const std::string& name, absl::string_view text) {
    key = Fnv1a(text, Fnv1a(name, key));
    bytes += text.size();
    ++num_files;
    return absl::OkStatus();
  }));
  const bool cacheable =
      tokenizer.name() != "byte" && cache_dir != "none" && tokenizer.vocab_size() <= 65536;
  const std::string cache_path =
      absl::StrCat(cache_dir.empty() ? DefaultTokenCacheDir() : cache_dir, "/text-",
                   absl::StrFormat("%016x", key), ".bin");
  const std::string what =
      absl::StrCat(num_files, " text files, ", bytes, " bytes, ", tokenizer.name(), " tokens");
  if (cacheable && fs::exists(cache_path)) {
    if (AppendLlmcShard(cache_path, &s.tokens).ok()) {
      s.documents = DocumentsAt(s.tokens, tokenizer.end_of_text(), /*after=*/true);
      s.description = absl::StrCat(what, " (cached in ", cache_path, ")");
      return s;
    }
    s.tokens.clear();  // a damaged cache is rebuilt
  }
  RETURN_IF_ERROR(ForEachTextFile(path, [&](const std::string&, absl::string_view text) {
    const int64_t begin = static_cast<int64_t>(s.tokens.size());
    if (s.documents.empty() || begin > s.documents.back()) s.documents.push_back(begin);
    for (size_t at = separator.empty() ? text.npos : text.find(separator); at != text.npos;
         at = text.find(separator, at + separator.size())) {
      const int64_t next = begin + static_cast<int64_t>(at + separator.size());  // byte tokens
      if (at + separator.size() < text.size()) s.documents.push_back(next);
    }
    std::vector<int32_t> ids = tokenizer.Encode(text);
    s.tokens.insert(s.tokens.end(), ids.begin(), ids.end());
    if (tokenizer.end_of_text() >= 0) s.tokens.push_back(tokenizer.end_of_text());
    return absl::OkStatus();
  }));
  if (tokenizer.end_of_text() >= 0) {  // as a cached stream gets them
    s.documents = DocumentsAt(s.tokens, tokenizer.end_of_text(), /*after=*/true);
  }
  while (s.documents.size() > 1 && s.documents.back() >= static_cast<int64_t>(s.tokens.size())) {
    s.documents.pop_back();  // empty files at the end
  }
  s.description = what;
  if (cacheable) {
    std::error_code ec;
    fs::create_directories(fs::path(cache_path).parent_path(), ec);
    if (!ec && WriteLlmcShard(cache_path, s.tokens).ok()) {
      s.description = absl::StrCat(what, " (tokenised once, cached in ", cache_path, ")");
    }
  }
  return s;
}

absl::StatusOr<Stream> ReadLlmc(const std::string& path, int32_t end_of_text) {
  std::vector<std::string> shards;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    for (const fs::directory_entry& e : fs::directory_iterator(path, ec)) {
      if (e.is_regular_file() && e.path().extension() == ".bin")
        shards.push_back(e.path().string());
    }
    std::sort(shards.begin(), shards.end());
    if (shards.empty())
      return absl::NotFoundError(absl::StrCat("no llm.c shards (*.bin) in ", path));
  } else {
    shards.push_back(path);
  }
  Stream s;
  s.format = "llmc";
  for (const std::string& shard : shards) {
    if (absl::Status st = AppendLlmcShard(shard, &s.tokens); !st.ok()) return st;
  }
  s.documents = DocumentsAt(s.tokens, end_of_text, /*after=*/false);
  s.description = absl::StrCat(shards.size(), " llm.c shard(s)");
  return s;
}

absl::StatusOr<Stream> ReadStream(const std::string& path, const std::string& format,
                                  const Tokenizer& tokenizer, const std::string& cache_dir,
                                  const std::string& separator = "") {
  const std::string resolved = ResolveFormat(path, format);
  if (resolved == "text") return ReadText(path, tokenizer, cache_dir, separator);
  if (resolved == "llmc") return ReadLlmc(path, tokenizer.end_of_text());
  if (resolved == "megatron") {
    absl::StatusOr<MegatronIndexedDataset> d = ReadMegatronIndexed(path);
    if (!d.ok()) return d.status();
    Stream s;
    s.format = "megatron";
    s.description = absl::StrCat("Megatron indexed dataset, ",
                                 d->doc_idx.empty() ? 0 : d->doc_idx.size() - 1, " documents");
    s.tokens = std::move(d->tokens);
    for (size_t i = 0; i + 1 < d->doc_idx.size(); ++i) {
      const int64_t begin = d->sequence_starts[d->doc_idx[i]];
      if (s.documents.empty() || begin > s.documents.back()) s.documents.push_back(begin);
    }
    return s;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown data format \"", format, "\" (choose auto, text, megatron or llmc)"));
}

absl::Status CheckVocabulary(const Stream& s, const std::string& path, const Tokenizer& tokenizer) {
  for (size_t i = 0; i < s.tokens.size(); ++i) {
    if (s.tokens[i] < 0 || s.tokens[i] >= tokenizer.vocab_size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token id ", s.tokens[i], " at position ", i, " of ", path, " (", s.format,
          ") is past the vocabulary of ", tokenizer.vocab_size(), " (tokenizer ", tokenizer.name(),
          "): the data was made for another tokenizer (see --tokenizer)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::string DefaultTokenCacheDir() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg) {
    return absl::StrCat(xdg, "/stagehand/tokens");
  }
  const char* home = std::getenv("HOME");
  return absl::StrCat(home != nullptr && *home ? home : "/tmp", "/.cache/stagehand/tokens");
}

std::vector<int64_t> PackSequences(int64_t num_tokens, int seq_len) {
  std::vector<int64_t> starts;
  for (int64_t s = 0; s + seq_len < num_tokens; s += seq_len) starts.push_back(s);
  return starts;
}

absl::StatusOr<Dataset> LoadDataset(const DatasetOptions& options, const Tokenizer& tokenizer) {
  if (options.seq_len <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("seq_len ", options.seq_len, " must be positive"));
  }
  if (options.validation_path.empty() &&
      !(options.validation_fraction > 0.0 && options.validation_fraction < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("validation fraction ", options.validation_fraction, " must be in (0, 1)"));
  }
  if (!options.document_separator.empty() &&
      (tokenizer.name() != "byte" || options.packing != Packing::kDocuments)) {
    return absl::InvalidArgumentError(
        "--document_separator needs --tokenizer=byte and --packing=documents (GPT-2 text gets "
        "its documents from its files)");
  }
  absl::StatusOr<Stream> stream = ReadStream(options.path, options.format, tokenizer,
                                             options.cache_dir, options.document_separator);
  if (!stream.ok()) return stream.status();
  if (absl::Status s = CheckVocabulary(*stream, options.path, tokenizer); !s.ok()) return s;
  Dataset d;
  d.format = stream->format;
  d.num_tokens = static_cast<int64_t>(stream->tokens.size());
  d.description =
      absl::StrCat(options.path, ": ", stream->description, ", ", d.num_tokens, " tokens");
  auto tokens = std::make_shared<const std::vector<int32_t>>(std::move(stream->tokens));
  auto documents = std::make_shared<const std::vector<int64_t>>(std::move(stream->documents));
  const std::vector<int64_t> all = PackSequences(d.num_tokens, options.seq_len);
  d.train.tokens = tokens;
  if (options.packing == Packing::kStream) documents = nullptr;
  d.train.documents = documents;
  if (options.validation_path.empty()) {
    // A fixed hash of the sequence index (not the run's seed): the held-out set stays the
    // same across seeds, so validation losses of different runs compare.
    d.validation.tokens = tokens;
    d.validation.documents = documents;
    for (size_t i = 0; i < all.size(); ++i) {
      const double u = double(Mix(0x5EEDED5E7ull ^ Mix(i)) >> 11) * 0x1.0p-53;
      (u < options.validation_fraction ? d.validation : d.train).starts.push_back(all[i]);
    }
  } else {
    absl::StatusOr<Stream> held_out = ReadStream(options.validation_path, "auto", tokenizer,
                                                 options.cache_dir, options.document_separator);
    if (!held_out.ok()) return held_out.status();
    if (absl::Status s = CheckVocabulary(*held_out, options.validation_path, tokenizer); !s.ok()) {
      return s;
    }
    d.train.starts = all;
    d.num_tokens += static_cast<int64_t>(held_out->tokens.size());
    d.validation.starts = PackSequences(held_out->tokens.size(), options.seq_len);
    d.validation.tokens = std::make_shared<const std::vector<int32_t>>(std::move(held_out->tokens));
    if (options.packing == Packing::kDocuments) {
      d.validation.documents =
          std::make_shared<const std::vector<int64_t>>(std::move(held_out->documents));
    }
    absl::StrAppend(&d.description, "; held out: ", options.validation_path, ": ",
                    held_out->description);
  }
  if (d.train.starts.empty() || d.validation.starts.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "data at ", options.path, " packs into ", d.train.starts.size(), " training and ",
        d.validation.starts.size(), " held-out sequences of ", int64_t{options.seq_len} + 1,
        " tokens; each split needs at least one (use more data, a smaller --seq_len or another "
        "--validation_fraction)"));
  }
  if (d.train.documents != nullptr) {
    absl::StrAppend(&d.description, "; ", d.train.documents->size(),
                    " documents packed (per-document attention)");
  }
  absl::StrAppend(&d.description, "; ", d.train.starts.size(), " training / ",
                  d.validation.starts.size(), " held-out sequences of ", options.seq_len,
                  "+1 tokens");
  return d;
}

WindowSampler MakeSampler(const TokenSplit& split, int micro_batch_size, int seq_len,
                          int num_microbatches, uint64_t seed) {
  WindowSampler sampler(split.tokens.get(), &split.starts, micro_batch_size, seq_len,
                        num_microbatches, seed);
  sampler.SetDocuments(split.documents.get());
  return sampler;
}

WindowSampler MakeHeldOutSampler(const TokenSplit& validation, int micro_batch_size, int seq_len,
                                 uint64_t seed) {
  return MakeSampler(validation, micro_batch_size, seq_len, 1, HeldOutOrderSeed(seed));
}

absl::StatusOr<Packing> ParsePacking(const std::string& text) {
  if (text == "stream") return Packing::kStream;
  if (text == "documents") return Packing::kDocuments;
  return absl::InvalidArgumentError(
      absl::StrCat("--packing=", text, ": choose stream or documents"));
}

}  // namespace stagehand::runtime
