// Redaction: hiding tenants' secret values in text that leaves the supervisor (log lines, error
// messages), so that a script cannot exfiltrate a secret by logging it or raising it.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace corral::broker {

// `text` with every occurrence of each secret value replaced by "[redacted:NAME]".
//
// - Each value is also looked for in its JSON-escaped form (quotes, backslashes and control
//   characters escaped the way corral's JSON encoder writes them), since a value logged inside a
//   JSON document appears that way.
// - Every byte of every occurrence is hidden, including occurrences that overlap each other or
//   another secret's. Where occurrences overlap or touch, the bytes go to the longest value, so a
//   secret that contains another is named as itself; a run of bytes hidden for one secret becomes
//   one marker.
// - Empty values are ignored.
//
// Runs in time linear in the text and the values' total length (no pathological inputs), so a
// script cannot slow the supervisor down by logging crafted text.
std::string redact(std::string_view text,
                   const std::vector<std::pair<std::string, std::string>>& name_and_value);

// How `value` appears inside a JSON string literal written by corral's encoder (without the
// surrounding quotes): '"' and '\' escaped, \b \f \n \r \t, other control characters as \u00xx.
std::string json_escaped(std::string_view value);

}  // namespace corral::broker
