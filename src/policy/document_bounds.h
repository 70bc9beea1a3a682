// Bounds on a policy document's shape, checked before yaml-cpp builds its tree: yaml-cpp's cost is
// in its own scanner and nodes, so a bound checked on the tree would come too late.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

#include "policy/policy.h"

namespace corral::policy {

// The deepest nesting of mappings and sequences a policy may have. The deepest the schema has is
// 7 (tenants.acme.capabilities.secrets.bind.stripe[0]).
inline constexpr int kMaxDocumentDepth = 32;
// The most values (scalars, mappings, sequences and aliases, each counted once) a policy may
// hold: about 1,000 tenants of 50 values each. yaml-cpp holds about 450 bytes a value.
inline constexpr size_t kMaxDocumentValues = 50'000;

// The deepest flow nesting ([ and {) of `text` read as YAML, as far as yaml-cpp's scanner would
// get, and where it first passes `max_depth`. Quoted scalars, comments, block scalars and plain
// scalars (a [ inside a word) are skipped as YAML skips them. yaml-cpp's scanner holds every token
// of an unclosed flow collection until it closes (200 KB of '[' held 28 MB), before the parser
// could stop it, so this is read from the text.
struct DepthPassed {
  int line = 0;    // 1-based
  int column = 0;  // 1-based
};
std::optional<DepthPassed> flow_depth_passes(std::string_view text, int max_depth);

// A problem if `text` nests deeper than kMaxDocumentDepth, holds more than kMaxDocumentValues
// values or more than one document, or is text on which yaml-cpp would start documents without
// end; nothing otherwise, and for other text that is not YAML (the parse that follows reports it).
// The flow nesting is read from the text (flow_depth_passes), the rest from yaml-cpp's events,
// which build no tree.
std::optional<Problem> document_bounds_problem(std::string_view text);

}  // namespace corral::policy
