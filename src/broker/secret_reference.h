// Secret references: the text ctx.secrets.ref(NAME) gives a script, "{{corral-secret:NAME}}",
// which the broker replaces with the secret's value in an http.fetch's header values and body,
// and only for a request whose every hop goes to an origin the policy binds to that secret
// (secrets.bind). The reference is not a secret: a script that writes one itself gets what
// ref() would have given it, since what it unlocks depends on the binding alone.
//
// Header-only so that the runtime (which writes references) and the broker (which reads them)
// share one spelling without the runtime linking the broker.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace corral::broker {

inline constexpr std::string_view kReferenceOpen = "{{corral-secret:";
inline constexpr std::string_view kReferenceClose = "}}";

// A secret name as the secrets store accepts it: 1 to 64 of A-Z, a-z, 0-9, '_', '.', '-'.
inline bool reference_name_valid(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

inline std::string secret_reference(std::string_view name) {
  return std::string(kReferenceOpen) + std::string(name) + std::string(kReferenceClose);
}

struct ReferenceAt {
  size_t begin = 0;  // of "{{corral-secret:"
  size_t end = 0;    // one past "}}"
  std::string name;
};

// Every well-formed reference in text, in order and not overlapping. Text that starts like one
// but has no valid name before "}}" is not a reference and is left as it is.
inline std::vector<ReferenceAt> find_references(std::string_view text) {
  std::vector<ReferenceAt> found;
  size_t from = 0;
  while ((from = text.find(kReferenceOpen, from)) != std::string_view::npos) {
    size_t name_begin = from + kReferenceOpen.size();
    // A name is at most 64 bytes, so "}}" is looked for only that far: the scan stays linear in
    // the text however many openings it holds.
    size_t close =
        text.substr(0, name_begin + 64 + kReferenceClose.size()).find(kReferenceClose, name_begin);
    std::string_view name = close == std::string_view::npos
                                ? std::string_view()
                                : text.substr(name_begin, close - name_begin);
    if (!reference_name_valid(name)) {
      ++from;
      continue;
    }
    found.push_back({from, close + kReferenceClose.size(), std::string(name)});
    from = close + kReferenceClose.size();
  }
  return found;
}

}  // namespace corral::broker
