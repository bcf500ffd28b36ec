// Tests for the Unicode class table and the UTF-8 decoder.
#include "runtime/data/unicode_classes.h"

#include "gtest/gtest.h"

namespace stagehand::runtime {
namespace {

TEST(UnicodeClassesTest, LettersNumbersAndSpacesAcrossScripts) {
  for (char32_t c : {U'a', U'Z', U'é', U'ß', U'Ω', U'ж', U'日', U'ア', U'ا', U'ǅ'}) {
    EXPECT_TRUE(IsLetter(c)) << std::hex << c;
  }
  for (char32_t c : {U'0', U'9', U'½', U'²', U'٣', U'Ⅻ', U'⑦'})
    EXPECT_TRUE(IsNumber(c)) << std::hex << c;
  for (char32_t c :
       {U' ', U'\t', U'\n', U'\r', U'\v', U'\f', U'\u00a0', U'\u3000', U'\u2028', U'\ufeff'}) {
    EXPECT_TRUE(IsSpace(c)) << std::hex << c;
  }
  for (char32_t c : {U'!', U'\'', U'-', U'€', U'😀', U'\u0301', U'\u0085'}) {
    EXPECT_FALSE(IsLetter(c) || IsNumber(c) || IsSpace(c)) << std::hex << c;
  }
  EXPECT_FALSE(IsLetter(kInvalidCodepoint) || IsNumber(kInvalidCodepoint) ||
               IsSpace(kInvalidCodepoint));
}

TEST(UnicodeClassesTest, DecodesUtf8AndRejectsMalformedBytesOneAtATime) {
  char32_t c;
  EXPECT_EQ(DecodeUtf8("é", 0, &c), 2u);
  EXPECT_EQ(c, U'é');
  EXPECT_EQ(DecodeUtf8("日", 0, &c), 3u);
  EXPECT_EQ(c, U'日');
  EXPECT_EQ(DecodeUtf8("😀", 0, &c), 4u);
  EXPECT_EQ(c, U'😀');
  EXPECT_EQ(DecodeUtf8("\xC3", 0, &c), 1u);  // truncated
  EXPECT_EQ(c, kInvalidCodepoint);
  EXPECT_EQ(DecodeUtf8("\xC0\xAF", 0, &c), 1u);  // overlong
  EXPECT_EQ(c, kInvalidCodepoint);
  EXPECT_EQ(DecodeUtf8("\xED\xA0\x80", 0, &c), 1u);  // surrogate
  EXPECT_EQ(c, kInvalidCodepoint);
  EXPECT_EQ(DecodeUtf8("\x80", 0, &c), 1u);  // continuation byte alone
  EXPECT_EQ(c, kInvalidCodepoint);
}

}  // namespace
}  // namespace stagehand::runtime
