#include "docs/doc_examples.h"

#include <nlohmann/json.hpp>
#include <sstream>

namespace corral::testing::docs {

namespace {

using nlohmann::json;

constexpr std::string_view kEllipsis = "…";
constexpr std::string_view kMarkerStart = "<!-- test:";
constexpr std::string_view kMarkerEnd = "-->";

std::string trim(std::string_view text) {
  size_t first = text.find_first_not_of(" \t\r");
  if (first == std::string_view::npos) return "";
  size_t last = text.find_last_not_of(" \t\r");
  return std::string(text.substr(first, last - first + 1));
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream stream(text);
  for (std::string line; std::getline(stream, line);) lines.push_back(line);
  return lines;
}

std::vector<std::string> words_of(const std::string& text) {
  std::vector<std::string> words;
  std::istringstream stream(text);
  for (std::string word; stream >> word;) words.push_back(word);
  return words;
}

// "run, exits 1" → {"run"}, {"exits", "1"}: the action, then its options, split at commas.
std::vector<std::vector<std::string>> clauses_of(const std::string& marker) {
  std::vector<std::vector<std::string>> clauses;
  std::istringstream stream(marker);
  for (std::string clause; std::getline(stream, clause, ',');) clauses.push_back(words_of(clause));
  return clauses;
}

Example read_marker(const std::string& marker, int line) {
  auto fail = [&](const std::string& why) -> BadMarker {
    return BadMarker("line " + std::to_string(line) + ": <!-- test:" + marker + "-->: " + why);
  };
  auto clauses = clauses_of(marker);
  if (clauses.empty() || clauses[0].empty())
    throw fail("names no action; write run, file NAME, output, stderr or policy");
  Example example;
  example.line = line;
  const auto& head = clauses[0];
  const std::string& action = head[0];
  if (action == "run" && head.size() == 1) {
    example.action = Action::run;
  } else if (action == "file" && head.size() == 2) {
    example.action = Action::file;
    example.file_name = head[1];
    if (example.file_name.find('/') != std::string::npos || example.file_name.starts_with("."))
      throw fail("a file is named without a directory and not hidden: " + example.file_name);
  } else if (action == "output" && head.size() == 1) {
    example.action = Action::output;
  } else if (action == "stderr" && head.size() == 1) {
    example.action = Action::stderr_output;
  } else if (action == "policy" && head.size() == 1) {
    example.action = Action::policy;
  } else {
    throw fail("unknown action; write run, file NAME, output, stderr or policy");
  }
  for (size_t i = 1; i < clauses.size(); ++i) {
    const auto& option = clauses[i];
    if (option.size() == 2 && option[0] == "exits" && example.action == Action::run) {
      example.exit_status = std::stoi(option[1]);
    } else if (option.size() >= 2 && option[0] == "varies" &&
               (example.action == Action::output || example.action == Action::stderr_output)) {
      example.varying_paths.insert(option.begin() + 1, option.end());
    } else {
      throw fail("unknown option; run takes `exits N`, output and stderr take `varies PATH…`");
    }
  }
  return example;
}

// `…` outside JSON strings, standing for a value, as a string "…" that matches any value.
std::string ellipses_as_wildcards(const std::string& shown) {
  std::string out;
  bool in_string = false;
  for (size_t i = 0; i < shown.size(); ++i) {
    char c = shown[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < shown.size()) {
        out += shown[++i];
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    std::string_view rest = std::string_view(shown).substr(i);
    if ((rest.starts_with("{…}") || rest.starts_with("[…]"))) {
      out += "\"…\"";
      i += 1 + kEllipsis.size();
    } else if (rest.starts_with(kEllipsis)) {
      out += "\"…\"";
      i += kEllipsis.size() - 1;
    } else {
      if (c == '"') in_string = true;
      out += c;
    }
  }
  return out;
}

// `pattern` with each `…` matching any text (the empty text too).
bool matches(std::string_view pattern, std::string_view text) {
  size_t cut = pattern.find(kEllipsis);
  if (cut == std::string_view::npos) return pattern == text;
  std::string_view head = pattern.substr(0, cut);
  if (!text.starts_with(head)) return false;
  pattern.remove_prefix(cut + kEllipsis.size());
  text.remove_prefix(head.size());
  while (true) {
    cut = pattern.find(kEllipsis);
    if (cut == std::string_view::npos)
      return text.size() >= pattern.size() && text.ends_with(pattern);
    std::string_view part = pattern.substr(0, cut);
    size_t found = text.find(part);
    if (found == std::string_view::npos) return false;
    text.remove_prefix(found + part.size());
    pattern.remove_prefix(cut + kEllipsis.size());
  }
}

std::string kind_of(const json& value) {
  if (value.is_number_float()) return "a float";
  if (value.is_number()) return "an integer";
  return std::string("a") + (value.is_object() || value.is_array() ? "n " : " ") +
         value.type_name();
}

std::optional<std::string> json_difference(const json& shown, const json& actual,
                                           const std::string& path,
                                           const std::set<std::string>& varying) {
  std::string where = path.empty() ? "the document" : path;
  if (varying.contains(path)) return std::nullopt;
  if (shown.is_string() && shown.get<std::string>() == kEllipsis) return std::nullopt;
  if (kind_of(shown) != kind_of(actual))
    return where + ": the doc shows " + kind_of(shown) + " (" + shown.dump() +
           "), the answer has " + kind_of(actual) + " (" + actual.dump() + ")";
  if (shown.is_object()) {
    for (const auto& [key, value] : shown.items()) {
      std::string inner = path.empty() ? key : path + "." + key;
      if (!actual.contains(key)) return inner + ": shown in the doc, missing in the answer";
      if (auto found = json_difference(value, actual[key], inner, varying)) return found;
    }
    for (const auto& [key, value] : actual.items()) {
      if (!shown.contains(key))
        return (path.empty() ? key : path + "." + key) + ": in the answer (" + value.dump() +
               "), not shown in the doc";
    }
    return std::nullopt;
  }
  if (shown.is_array()) {
    if (shown.size() != actual.size())
      return where + ": the doc shows " + std::to_string(shown.size()) +
             " elements, the answer has " + std::to_string(actual.size()) + ": " + actual.dump();
    for (size_t i = 0; i < shown.size(); ++i) {
      if (auto found =
              json_difference(shown[i], actual[i], path + "[" + std::to_string(i) + "]", varying))
        return found;
    }
    return std::nullopt;
  }
  if (shown.is_string() ? !matches(shown.get<std::string>(), actual.get<std::string>())
                        : shown != actual)
    return where + ": the doc shows " + shown.dump() + ", the answer has " + actual.dump();
  return std::nullopt;
}

std::vector<std::string> significant_lines(const std::string& text) {
  std::vector<std::string> lines;
  for (const auto& line : lines_of(text)) {
    size_t end = line.find_last_not_of(" \t\r");
    lines.push_back(end == std::string::npos ? "" : line.substr(0, end + 1));
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  size_t first = 0;
  while (first < lines.size() && lines[first].empty()) ++first;
  return {lines.begin() + static_cast<std::ptrdiff_t>(first), lines.end()};
}

// Whether got[g…] matches expected[e…], a line of `…` alone standing for any number of lines.
bool lines_match(const std::vector<std::string>& expected, size_t e,
                 const std::vector<std::string>& got, size_t g) {
  if (e == expected.size()) return g == got.size();
  if (expected[e] == kEllipsis) {
    for (size_t skip = g; skip <= got.size(); ++skip) {
      if (lines_match(expected, e + 1, got, skip)) return true;
    }
    return false;
  }
  return g < got.size() && matches(expected[e], got[g]) && lines_match(expected, e + 1, got, g + 1);
}

std::optional<std::string> text_difference(const std::string& shown, const std::string& actual) {
  auto expected = significant_lines(shown);
  auto got = significant_lines(actual);
  if (lines_match(expected, 0, got, 0)) return std::nullopt;
  // Where they part, for the message: the first line that differs, reading both from the top.
  for (size_t i = 0; i < std::max(expected.size(), got.size()); ++i) {
    std::string line = "line " + std::to_string(i + 1) + ": ";
    if (i >= got.size()) return line + "the doc shows \"" + expected[i] + "\", the output ended";
    if (i >= expected.size()) return line + "the output goes on with \"" + got[i] + "\"";
    if (expected[i] == kEllipsis) return "from line " + std::to_string(i + 1) + " on, they differ";
    if (!matches(expected[i], got[i]))
      return line + "the doc shows \"" + expected[i] + "\", the output has \"" + got[i] + "\"";
  }
  return "they differ";
}

}  // namespace

std::vector<Example> examples_in(const std::string& markdown) {
  std::vector<Example> examples;
  auto lines = lines_of(markdown);
  bool ran_before = false;
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string line = trim(lines[i]);
    if (!line.starts_with(kMarkerStart)) continue;
    int number = static_cast<int>(i) + 1;
    if (!line.ends_with(kMarkerEnd))
      throw BadMarker("line " + std::to_string(number) +
                      ": a test marker ends on its own line: " + line);
    Example example = read_marker(
        line.substr(kMarkerStart.size(), line.size() - kMarkerStart.size() - kMarkerEnd.size()),
        number);
    std::string fence = i + 1 < lines.size() ? trim(lines[i + 1]) : "";
    size_t ticks = fence.find_first_not_of('`');
    if (!fence.starts_with("```"))
      throw BadMarker("line " + std::to_string(number) +
                      ": a test marker stands right above a fenced block (```), not above \"" +
                      fence + "\"");
    std::string marks = fence.substr(0, ticks == std::string::npos ? fence.size() : ticks);
    std::string info = ticks == std::string::npos ? "" : fence.substr(ticks);
    example.language = info.substr(0, info.find(' '));
    size_t end = i + 2;
    for (; end < lines.size() && trim(lines[end]) != marks; ++end)
      example.text += lines[end] + "\n";
    if (end == lines.size())
      throw BadMarker("line " + std::to_string(number) + ": the block is not closed with " + marks);
    if ((example.action == Action::output || example.action == Action::stderr_output) &&
        !ran_before)
      throw BadMarker("line " + std::to_string(number) +
                      ": an output shows what a run block printed, but no run block comes before");
    if (example.action == Action::run) ran_before = true;
    examples.push_back(std::move(example));
    i = end;
  }
  return examples;
}

bool has_examples(const std::string& markdown) {
  std::istringstream stream(markdown);
  for (std::string line; std::getline(stream, line);) {
    if (trim(line).starts_with(kMarkerStart)) return true;
  }
  return false;
}

std::optional<std::string> difference(const std::string& shown, const std::string& actual,
                                      const std::set<std::string>& varying) {
  json expected = json::parse(ellipses_as_wildcards(shown), nullptr, false);
  if (expected.is_discarded()) return text_difference(shown, actual);
  json got = json::parse(actual, nullptr, false);
  if (got.is_discarded()) return "the doc shows JSON, the output is not JSON:\n" + actual;
  return json_difference(expected, got, "", varying);
}

}  // namespace corral::testing::docs
