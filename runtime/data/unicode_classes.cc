// Unicode class lookups by binary search over generated ranges, and a strict UTF-8 decoder.
#include "runtime/data/unicode_classes.h"

#include <algorithm>
#include <cstdint>
#include <iterator>

namespace stagehand::runtime {
namespace {

struct CodepointRange {
  char32_t first, last;  // inclusive
};

#include "runtime/data/unicode_classes_table.inc"

template <size_t N>
bool InRanges(const CodepointRange (&ranges)[N], char32_t c) {
  const CodepointRange* it =
      std::upper_bound(std::begin(ranges), std::end(ranges), c,
                       [](char32_t value, const CodepointRange& r) { return value < r.first; });
  return it != std::begin(ranges) && c <= std::prev(it)->last;
}

}  // namespace

bool IsLetter(char32_t c) { return InRanges(kLetterRanges, c); }
bool IsNumber(char32_t c) { return InRanges(kNumberRanges, c); }
bool IsSpace(char32_t c) { return InRanges(kSpaceRanges, c); }

size_t DecodeUtf8(absl::string_view text, size_t pos, char32_t* c) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  const uint8_t b0 = byte(pos);
  *c = kInvalidCodepoint;
  if (b0 < 0x80) {
    *c = b0;
    return 1;
  }
  size_t n;
  char32_t value, min;
  if ((b0 & 0xE0) == 0xC0) {
    n = 2, value = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    n = 3, value = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    n = 4, value = b0 & 0x07, min = 0x10000;
  } else {
    return 1;
  }
  if (pos + n > text.size()) return 1;
  for (size_t i = 1; i < n; ++i) {
    if ((byte(pos + i) & 0xC0) != 0x80) return 1;
    value = (value << 6) | (byte(pos + i) & 0x3F);
  }
  // Overlong forms, surrogates and values past U+10FFFF are malformed.
  if (value < min || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) return 1;
  *c = value;
  return n;
}

}  // namespace stagehand::runtime
