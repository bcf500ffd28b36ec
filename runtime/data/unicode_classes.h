// Unicode classes that GPT-2's pre-tokenizer needs (\p{L}, \p{N}, \s) and UTF-8 decoding,
// from a compact range table generated with node. Not ICU: no other properties, no normalisation.
#ifndef STAGEHAND_RUNTIME_DATA_UNICODE_CLASSES_H_
#define STAGEHAND_RUNTIME_DATA_UNICODE_CLASSES_H_

#include <cstddef>

#include "absl/strings/string_view.h"

namespace stagehand::runtime {

// A code point that is none of letter, number or space (what an invalid UTF-8 byte decodes to).
inline constexpr char32_t kInvalidCodepoint = 0xFFFFFFFF;

bool IsLetter(char32_t c);  // \p{L}
bool IsNumber(char32_t c);  // \p{N}
// JavaScript's \s (the gpt-3-encoder reference): Python's Unicode \s differs only in
// U+001C..U+001F and U+0085 (spaces there, not here) and U+FEFF (here, not there).
bool IsSpace(char32_t c);

// Decodes the code point at text[pos] into *c and returns its length in bytes (>= 1). A
// malformed or truncated sequence is one byte long and decodes to kInvalidCodepoint.
size_t DecodeUtf8(absl::string_view text, size_t pos, char32_t* c);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_DATA_UNICODE_CLASSES_H_
