#include "broker/redaction.h"

#include <string.h>  // memmem, a GNU extension

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace corral::broker {

namespace {

struct Pattern {
  std::string bytes;
  int32_t secret;  // index into name_and_value
};

// Knuth–Morris–Pratt: linear in the text whatever the pattern, where a naive search (or
// std::string_view::find) is quadratic on inputs like "aaa…ab" in "aaa…a", which a script could
// log on purpose. glibc's memmem (Two-Way, also linear) first skips to the first occurrence, so
// the common case, a secret that is not in the text at all, costs one fast scan.
class Matcher {
 public:
  explicit Matcher(std::string_view pattern) : pattern_(pattern), fallback_(pattern.size(), 0) {
    for (size_t i = 1, k = 0; i < pattern.size(); ++i) {
      while (k > 0 && pattern[i] != pattern[k]) k = fallback_[k - 1];
      if (pattern[i] == pattern[k]) ++k;
      fallback_[i] = k;
    }
  }

  // Calls on_match(start) for every occurrence, overlapping ones included, in increasing order.
  template <typename OnMatch>
  void find_all(std::string_view text, OnMatch on_match) const {
    const size_t m = pattern_.size(), n = text.size();
    const void* first = memmem(text.data(), n, pattern_.data(), m);
    if (first == nullptr) return;
    size_t i = static_cast<size_t>(static_cast<const char*>(first) - text.data());
    size_t matched = 0;
    while (i < n) {
      if (matched == 0) {
        auto hit = static_cast<const char*>(std::memchr(text.data() + i, pattern_[0], n - i));
        if (hit == nullptr) return;
        i = static_cast<size_t>(hit - text.data());
      }
      while (matched > 0 && text[i] != pattern_[matched]) matched = fallback_[matched - 1];
      if (text[i] == pattern_[matched]) ++matched;
      if (matched == m) {
        on_match(i + 1 - m);
        matched = fallback_[m - 1];
      }
      ++i;
    }
  }

 private:
  std::string_view pattern_;
  std::vector<size_t> fallback_;  // length of the longest proper border of pattern[0..i]
};

}  // namespace

std::string json_escaped(std::string_view value) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string escaped;
  escaped.reserve(value.size());
  for (char ch : value) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        escaped += "\\\"";
        break;
      case '\\':
        escaped += "\\\\";
        break;
      case '\n':
        escaped += "\\n";
        break;
      case '\r':
        escaped += "\\r";
        break;
      case '\t':
        escaped += "\\t";
        break;
      case '\b':
        escaped += "\\b";
        break;
      case '\f':
        escaped += "\\f";
        break;
      default:
        if (c < 0x20) {
          const char escape[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
          escaped.append(escape, sizeof escape);
        } else {
          escaped.push_back(ch);
        }
    }
  }
  return escaped;
}

std::string redact(std::string_view text,
                   const std::vector<std::pair<std::string, std::string>>& name_and_value) {
  std::vector<Pattern> patterns;
  for (size_t s = 0; s < name_and_value.size(); ++s) {
    const std::string& value = name_and_value[s].second;
    if (value.empty() || value.size() > text.size()) continue;
    patterns.push_back(Pattern{value, static_cast<int32_t>(s)});
    std::string escaped = json_escaped(value);
    if (escaped != value) patterns.push_back(Pattern{std::move(escaped), static_cast<int32_t>(s)});
  }
  // Longest first: bytes already claimed keep their owner, so a secret containing another is
  // named as itself.
  std::stable_sort(patterns.begin(), patterns.end(), [](const Pattern& a, const Pattern& b) {
    return a.bytes.size() > b.bytes.size();
  });

  constexpr int32_t kClear = -1;
  std::vector<int32_t> owner;  // per byte of text: the secret hiding it, or kClear
  for (const Pattern& pattern : patterns) {
    if (pattern.bytes.size() > text.size()) continue;
    // Occurrences come in increasing order, so overlapping ones merge into one interval as they
    // come; painting disjoint intervals keeps the work linear even when occurrences overlap
    // heavily.
    size_t begin = 0, end = 0;
    auto paint = [&] {
      for (size_t i = begin; i < end; ++i) {
        if (owner[i] == kClear) owner[i] = pattern.secret;
      }
    };
    Matcher(pattern.bytes).find_all(text, [&](size_t start) {
      if (owner.empty()) owner.assign(text.size(), kClear);
      if (start > end || end == 0) {
        paint();
        begin = start;
      }
      end = start + pattern.bytes.size();
    });
    paint();
  }
  if (owner.empty()) return std::string(text);

  std::string redacted;
  redacted.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    if (owner[i] == kClear) {
      size_t run = i;
      while (run < text.size() && owner[run] == kClear) ++run;
      redacted.append(text.substr(i, run - i));
      i = run;
      continue;
    }
    int32_t secret = owner[i];
    while (i < text.size() && owner[i] == secret) ++i;
    redacted += "[redacted:" + name_and_value[static_cast<size_t>(secret)].first + "]";
  }
  return redacted;
}

}  // namespace corral::broker
