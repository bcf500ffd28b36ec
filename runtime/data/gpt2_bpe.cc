// GPT-2 BPE: pre-tokenizer over code points, vocabulary loading (bytes_to_unicode undone so
// the merge loop works on raw bytes) and the merge loop of encoder.py's bpe().
#include "runtime/data/gpt2_bpe.h"

#include <climits>
#include <fstream>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "runtime/data/unicode_classes.h"

namespace stagehand::runtime {
namespace {

enum class CharClass { kLetter, kNumber, kSpace, kOther };

CharClass Classify(char32_t c) {
  if (IsLetter(c)) return CharClass::kLetter;
  if (IsNumber(c)) return CharClass::kNumber;
  if (IsSpace(c)) return CharClass::kSpace;
  return CharClass::kOther;
}

// The length (in code points) of a contraction 's 't 're 've 'm 'll 'd starting at i, or 0.
size_t ContractionLength(const std::vector<char32_t>& cps, size_t i) {
  if (cps[i] != U'\'' || i + 1 >= cps.size()) return 0;
  const char32_t a = cps[i + 1];
  if (a == U's' || a == U't' || a == U'm' || a == U'd') return 2;
  if (i + 2 >= cps.size()) return 0;
  const char32_t b = cps[i + 2];
  if ((a == U'r' && b == U'e') || (a == U'v' && b == U'e') || (a == U'l' && b == U'l')) return 3;
  return 0;
}

// GPT-2's bytes_to_unicode(): printable bytes map to themselves, the other 68 to U+0100...
void ByteToUnicode(char32_t table[256]) {
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable =
        (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    table[b] = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
  }
}

// A vocabulary string (bytes shown as code points by bytes_to_unicode) back to raw bytes.
absl::StatusOr<std::string> UnicodeToBytes(absl::string_view text,
                                           const absl::flat_hash_map<char32_t, char>& decoder) {
  std::string out;
  for (size_t pos = 0; pos < text.size();) {
    char32_t c;
    pos += DecodeUtf8(text, pos, &c);
    auto it = decoder.find(c);
    if (it == decoder.end()) {
      return absl::DataLossError(absl::StrCat(
          "vocabulary entry \"", text, "\" holds a character outside GPT-2's byte alphabet"));
    }
    out.push_back(it->second);
  }
  return out;
}

uint64_t PairKey(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

uint64_t Fnv1a(absl::string_view bytes, uint64_t h = 0xcbf29ce484222325ull) {
  for (unsigned char c : bytes) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

std::vector<absl::string_view> Gpt2PreTokenize(absl::string_view text) {
  std::vector<char32_t> cps;
  std::vector<size_t> offsets;  // byte offset of each code point, then text.size()
  for (size_t pos = 0; pos < text.size();) {
    char32_t c;
    offsets.push_back(pos);
    pos += DecodeUtf8(text, pos, &c);
    cps.push_back(c);
  }
  offsets.push_back(text.size());
  const size_t n = cps.size();
  std::vector<CharClass> cls(n);
  for (size_t i = 0; i < n; ++i) cls[i] = Classify(cps[i]);
  std::vector<absl::string_view> pieces;
  auto emit = [&](size_t begin, size_t end) {
    pieces.push_back(text.substr(offsets[begin], offsets[end] - offsets[begin]));
  };
  for (size_t i = 0; i < n;) {
    // 1. 's|'t|'re|'ve|'m|'ll|'d
    if (size_t len = ContractionLength(cps, i); len > 0) {
      emit(i, i + len);
      i += len;
      continue;
    }
    // 2-4. ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: one space may lead a run of a class.
    const size_t j = (cps[i] == U' ' && i + 1 < n && cls[i + 1] != CharClass::kSpace) ? i + 1 : i;
    if (cls[j] != CharClass::kSpace) {
      size_t k = j;
      while (k < n && cls[k] == cls[j]) ++k;
      emit(i, k);
      i = k;
      continue;
    }
    // 5. `\s+(?!\S)`: a space run, less its last character when a non-space follows;
    // 6. `\s+`: a single space before a non-space.
    size_t k = i;
    while (k < n && cls[k] == CharClass::kSpace) ++k;
    const size_t end = (k < n && k - i >= 2) ? k - 1 : k;
    emit(i, end);
    i = end;
  }
  return pieces;
}

absl::StatusOr<std::unique_ptr<Gpt2Tokenizer>> Gpt2Tokenizer::Load(const std::string& dir) {
  absl::StatusOr<std::string> encoder = ReadWholeFile(dir + "/encoder.json");
  if (!encoder.ok()) return encoder.status();
  absl::StatusOr<std::string> merges = ReadWholeFile(dir + "/vocab.bpe");
  if (!merges.ok()) return merges.status();
  absl::StatusOr<std::unique_ptr<Gpt2Tokenizer>> t = FromContents(*encoder, *merges);
  if (!t.ok()) return absl::DataLossError(absl::StrCat(dir, ": ", t.status().message()));
  return t;
}

absl::StatusOr<std::unique_ptr<Gpt2Tokenizer>> Gpt2Tokenizer::FromContents(
    absl::string_view encoder_json, absl::string_view vocab_bpe) {
  std::unique_ptr<Gpt2Tokenizer> t(new Gpt2Tokenizer());
  char32_t to_unicode[256];
  ByteToUnicode(to_unicode);
  absl::flat_hash_map<char32_t, char> decoder;
  for (int b = 0; b < 256; ++b) decoder[to_unicode[b]] = static_cast<char>(b);
  // 1. encoder.json: {"token": id}, ids dense in [0, n).
  nlohmann::json vocab = nlohmann::json::parse(encoder_json, nullptr, /*allow_exceptions=*/false);
  if (vocab.is_discarded() || !vocab.is_object() || vocab.empty()) {
    return absl::DataLossError("encoder.json is not a JSON object of token -> id");
  }
  t->id_to_bytes_.resize(vocab.size());
  std::vector<bool> seen(vocab.size(), false);
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
        it.value().get<int64_t>() >= static_cast<int64_t>(vocab.size()) ||
        seen[it.value().get<int64_t>()]) {
      return absl::DataLossError(absl::StrCat("encoder.json: token \"", it.key(), "\" has id ",
                                              it.value().dump(), ", not a unique id in [0, ",
                                              vocab.size(), ")"));
    }
    absl::StatusOr<std::string> bytes = UnicodeToBytes(it.key(), decoder);
    if (!bytes.ok()) return bytes.status();
    const int32_t id = it.value().get<int32_t>();
    seen[id] = true;
    t->id_to_bytes_[id] = *bytes;
    t->bytes_to_id_[*bytes] = id;
  }
  for (int b = 0; b < 256; ++b) {
    auto it = t->bytes_to_id_.find(std::string(1, static_cast<char>(b)));
    if (it == t->bytes_to_id_.end()) {
      return absl::DataLossError(absl::StrCat("encoder.json has no token for byte ", b));
    }
    t->byte_id_[b] = it->second;
  }
  if (auto it = t->bytes_to_id_.find("<|endoftext|>"); it != t->bytes_to_id_.end()) {
    t->end_of_text_ = it->second;
  }
  // 2. vocab.bpe: a version line, then one merge "left right" per line, by rank.
  std::vector<absl::string_view> lines = absl::StrSplit(vocab_bpe, '\n');
  int32_t rank = 0;
  for (size_t i = 1; i < lines.size(); ++i) {
    if (lines[i].empty()) continue;
    std::vector<absl::string_view> parts = absl::StrSplit(lines[i], ' ', absl::SkipEmpty());
    if (parts.size() != 2) {
      return absl::DataLossError(absl::StrCat("vocab.bpe line ", i + 1, " \"", lines[i],
                                              "\" is not two tokens separated by a space"));
    }
    absl::StatusOr<std::string> left = UnicodeToBytes(parts[0], decoder);
    if (!left.ok()) return left.status();
    absl::StatusOr<std::string> right = UnicodeToBytes(parts[1], decoder);
    if (!right.ok()) return right.status();
    auto l = t->bytes_to_id_.find(*left), r = t->bytes_to_id_.find(*right),
         m = t->bytes_to_id_.find(*left + *right);
    if (l == t->bytes_to_id_.end() || r == t->bytes_to_id_.end() || m == t->bytes_to_id_.end()) {
      return absl::DataLossError(absl::StrCat("vocab.bpe line ", i + 1, " \"", lines[i],
                                              "\" merges tokens that encoder.json lacks"));
    }
    t->merges_.try_emplace(PairKey(l->second, r->second), rank++, m->second);
  }
  t->fingerprint_ =
      absl::StrCat("gpt2:", vocab.size(), ":", rank, ":", Fnv1a(vocab_bpe, Fnv1a(encoder_json)));
  return t;
}

void Gpt2Tokenizer::EncodePiece(absl::string_view piece, std::vector<int32_t>* out) const {
  std::vector<int32_t> word, merged;
  word.reserve(piece.size());
  for (unsigned char b : piece) word.push_back(byte_id_[b]);
  // encoder.py's bpe(): merge every occurrence of the lowest-ranked adjacent pair, left to
  // right, until no adjacent pair is a merge.
  while (word.size() > 1) {
    int32_t best_rank = INT32_MAX, left = -1, right = -1, result = -1;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      auto it = merges_.find(PairKey(word[i], word[i + 1]));
      if (it != merges_.end() && it->second.first < best_rank) {
        best_rank = it->second.first, left = word[i], right = word[i + 1],
        result = it->second.second;
      }
    }
    if (result < 0) break;
    merged.clear();
    for (size_t i = 0; i < word.size();) {
      if (i + 1 < word.size() && word[i] == left && word[i + 1] == right) {
        merged.push_back(result);
        i += 2;
      } else {
        merged.push_back(word[i++]);
      }
    }
    word.swap(merged);
  }
  out->insert(out->end(), word.begin(), word.end());
}

std::vector<int32_t> Gpt2Tokenizer::Encode(absl::string_view text) const {
  std::vector<int32_t> out;
  absl::flat_hash_map<absl::string_view, std::pair<size_t, size_t>> cache;  // piece -> span of out
  for (absl::string_view piece : Gpt2PreTokenize(text)) {
    if (auto it = cache.find(piece); it != cache.end()) {
      const auto [begin, length] = it->second;
      for (size_t i = 0; i < length; ++i) out.push_back(out[begin + i]);
      continue;
    }
    const size_t begin = out.size();
    EncodePiece(piece, &out);
    cache[piece] = {begin, out.size() - begin};
  }
  return out;
}

absl::StatusOr<std::string> Gpt2Tokenizer::Decode(absl::Span<const int32_t> ids) const {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab_size()) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", ids[i], " at position ", i,
                                                     " is outside the GPT-2 vocabulary [0, ",
                                                     vocab_size(), ")"));
    }
    out += id_to_bytes_[ids[i]];
  }
  return out;
}

}  // namespace stagehand::runtime
