// Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace corral::runtime {

// Length of the valid sequence starting at text[i], or 0 if the bytes there are not one.
inline size_t utf8_sequence_length(std::string_view text, size_t i) {
  auto c = static_cast<unsigned char>(text[i]);
  if (c < 0x80) return 1;
  size_t length = (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
  if (length == 0 || i + length > text.size()) return 0;
  uint32_t code_point = c & (0x7f >> length);
  for (size_t k = 1; k < length; ++k) {
    auto continuation = static_cast<unsigned char>(text[i + k]);
    if ((continuation & 0xc0) != 0x80) return 0;
    code_point = (code_point << 6) | (continuation & 0x3f);
  }
  static constexpr uint32_t kSmallest[] = {0, 0, 0x80, 0x800, 0x10000};
  if (code_point < kSmallest[length] || code_point > 0x10ffff) return 0;
  if (code_point >= 0xd800 && code_point <= 0xdfff) return 0;
  return length;
}

// Offset of the first byte that is not valid UTF-8, or npos.
inline size_t utf8_first_invalid(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    size_t length = utf8_sequence_length(text, i);
    if (length == 0) return i;
    i += length;
  }
  return std::string_view::npos;
}

// A copy of text that is valid UTF-8: each byte that is not becomes U+FFFD.
inline std::string sanitize_utf8(std::string_view text) {
  if (utf8_first_invalid(text) == std::string_view::npos) return std::string(text);
  std::string clean;
  clean.reserve(text.size() + 8);
  for (size_t i = 0; i < text.size();) {
    size_t length = utf8_sequence_length(text, i);
    if (length == 0) {
      clean.append("\xef\xbf\xbd");
      ++i;
    } else {
      clean.append(text.substr(i, length));
      i += length;
    }
  }
  return clean;
}

}  // namespace corral::runtime
