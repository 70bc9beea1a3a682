// Reading JSON that comes from outside the process: request bodies, a worker's frames, the broker's
// calls, a CLI input. One parser for all of them, stricter than the plain one where leniency would
// let two readers of the same text disagree or let the text exhaust the host.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace corral {

// How deep any JSON document that crosses a process boundary may nest. Scripts see at most 100
// levels (docs/scripting.md); the envelope of a request or result adds a few.
inline constexpr int kMaxDocumentDepth = 128;

// Parses JSON text from outside the process. Refuses, with InvalidRequest (invocation.h) whose
// `where` is the path of the value in question ("input.items[2].id"; "body" for the document
// itself):
// - an object with the same key twice: readers differ on which one counts (nlohmann keeps the
//   last, many proxies and clients the first), so the text means what each reader wants it to;
// - a number outside the range of a double (1e309, an integer of hundreds of digits), which no
//   reader can hold;
// - nesting deeper than max_depth, refused while parsing, so that no later recursive walk over
//   the value (dump, comparison, conversion to Lua) can exhaust the host's stack.
// Text that is not JSON at all throws nlohmann::json::parse_error.
nlohmann::json parse_untrusted_json(std::string_view text, int max_depth = kMaxDocumentDepth);

// Where `text` stops being JSON, for a message a client reads in place of the library's (which
// names the parser's internals): "it breaks at line 1, column 9 (byte 9), at 'x'", or "the text
// ends before the JSON does". `error` is what parse_untrusted_json threw for `text`.
std::string describe_json_syntax_error(const nlohmann::json::parse_error& error,
                                       std::string_view text);

}  // namespace corral
