#include "policy/document_bounds.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/parser.h>

#include <sstream>
#include <string>
#include <vector>

namespace corral::policy {

namespace {

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

}  // namespace

// The reading follows YAML's rules for where a node may begin, since only there do '[', '{', a
// quote or '|' mean anything: everywhere else they are a plain scalar's text. A reading that
// diverged from yaml-cpp's could hide flow nesting inside what it takes for a quoted scalar or a
// block scalar, so each of those is skipped exactly as YAML ends it (a quote doubled or escaped;
// the lines indented more than the block scalar's parent), and a plain scalar continued on a
// more indented line stays a plain scalar.
std::optional<DepthPassed> flow_depth_passes(std::string_view text, int max_depth) {
  const size_t n = text.size();
  size_t i = 0;
  size_t line_begin = 0;
  int line = 1;
  int depth = 0;                 // open flow collections
  bool at_node_start = true;     // a node may begin here
  bool after_space = true;       // the previous character was blank, or this is a line's start
  bool after_json_like = false;  // after a quoted scalar or a flow end, ':' is an indicator
  // Block context: the column of the node the next value belongs to (its key or its '-').
  int owner = -1;
  bool plain_open = false;  // the line so far ends inside a plain scalar...
  int plain_parent = -1;    // ...which lines indented more than this continue
  bool block_scalar = false;
  int block_parent = -1;
  int block_indent = -1;  // the block scalar's content indentation, once known

  auto end_of_line = [&](size_t from) {
    size_t eol = text.find('\n', from);
    return eol == std::string_view::npos ? n : eol;
  };
  auto next_line = [&](size_t eol) {
    i = eol < n ? eol + 1 : n;
    ++line;
    line_begin = i;
  };
  auto column = [&] { return static_cast<int>(i - line_begin); };

  while (i < n) {
    if (i == line_begin) {
      size_t first = i;
      while (first < n && text[first] == ' ') ++first;
      int indent = static_cast<int>(first - i);
      size_t eol = end_of_line(i);
      bool blank = text.substr(first, eol - first).find_first_not_of(" \t\r") == std::string::npos;
      if (block_scalar) {
        if (blank) {
          next_line(eol);
          continue;
        }
        if (block_indent < 0 && indent > block_parent) block_indent = indent;
        if (block_indent >= 0 && indent >= block_indent) {
          next_line(eol);
          continue;
        }
        block_scalar = false;
      }
      if (depth == 0) {
        if (blank) {
          next_line(eol);
          continue;
        }
        std::string_view rest = text.substr(first);
        if (indent == 0 && rest.starts_with('%')) {  // a directive
          next_line(eol);
          continue;
        }
        if (indent == 0 && (rest.starts_with("---") || rest.starts_with("...")) &&
            (rest.size() == 3 || is_blank(rest[3]))) {
          i = first + 3;
          at_node_start = true;
          plain_open = false;
          owner = -1;
          after_space = true;
          continue;
        }
        if (plain_open && indent > plain_parent && text[first] != '#') {
          at_node_start = false;  // the plain scalar goes on
        } else {
          at_node_start = true;
          plain_open = false;
          owner = indent;
        }
      }
      i = first;
      after_space = true;
      if (i >= n) break;
    }

    char c = text[i];
    if (c == '\n') {
      next_line(i);
      after_space = true;
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\r') {
      after_space = true;
      ++i;
      continue;
    }
    bool was_after_space = after_space;
    after_space = false;
    char next = i + 1 < n ? text[i + 1] : '\n';

    if (c == '#' && was_after_space) {  // a comment, to the end of the line
      plain_open = false;
      i = end_of_line(i);
      continue;
    }
    if ((c == '"' || c == '\'') && at_node_start) {
      if (depth == 0) owner = column();
      size_t k = i + 1;
      for (; k < n; ++k) {
        char q = text[k];
        if (q == '\n') {
          ++line;
          line_begin = k + 1;
        } else if (c == '"' && q == '\\') {
          if (k + 1 < n && text[k + 1] == '\n') {
            ++line;
            line_begin = k + 2;
          }
          ++k;
        } else if (q == c) {
          if (c == '\'' && k + 1 < n && text[k + 1] == '\'') {
            ++k;
            continue;
          }
          break;
        }
      }
      i = k + 1;
      at_node_start = false;
      plain_open = false;
      after_json_like = true;
      continue;
    }
    if ((c == '&' || c == '!' || c == '*') && at_node_start) {  // anchor, tag or alias
      while (i < n && !is_blank(text[i]) &&
             !(depth > 0 && std::string_view(",[]{}").find(text[i]) != std::string_view::npos)) {
        ++i;
      }
      if (c == '*') at_node_start = false;  // an alias is the node; after a tag or anchor it comes
      after_json_like = false;
      continue;
    }
    if ((c == '[' || c == '{') && (depth > 0 || at_node_start)) {
      if (++depth > max_depth) return DepthPassed{line, column() + 1};
      at_node_start = true;
      plain_open = false;
      after_json_like = false;
      ++i;
      continue;
    }
    if ((c == ']' || c == '}') && depth > 0) {
      --depth;
      at_node_start = false;
      after_json_like = true;
      ++i;
      continue;
    }
    if (c == ',' && depth > 0) {
      at_node_start = true;
      after_json_like = false;
      ++i;
      continue;
    }
    if (c == ':' &&
        (is_blank(next) || (depth > 0 && (after_json_like || std::string_view(",[]{}").find(next) !=
                                                                 std::string_view::npos)))) {
      at_node_start = true;
      plain_open = false;
      after_json_like = false;
      ++i;
      continue;
    }
    if ((c == '-' || c == '?') && at_node_start && is_blank(next)) {
      if (depth == 0) owner = column();
      ++i;
      continue;
    }
    if ((c == '|' || c == '>') && at_node_start && depth == 0) {
      block_scalar = true;
      block_parent = owner;
      block_indent = -1;
      size_t eol = end_of_line(i);
      for (size_t k = i + 1; k < eol && text[k] != ' ' && text[k] != '#'; ++k) {
        if (text[k] >= '1' && text[k] <= '9') block_indent = std::max(0, owner) + (text[k] - '0');
      }
      at_node_start = false;
      plain_open = false;
      i = eol;
      continue;
    }
    // A plain scalar's character.
    if (at_node_start && depth == 0) {
      plain_parent = owner;
      owner = column();
    }
    plain_open = depth == 0;
    at_node_start = false;
    after_json_like = false;
    ++i;
  }
  return std::nullopt;
}

namespace {

// Stops the event pass at the first value past a bound.
struct Passed {
  Problem problem;
};

// Counts values and nesting from yaml-cpp's events, which it produces without building a tree,
// and keeps the path to the value being read, for the problem.
class ShapeCounter : public YAML::EventHandler {
 public:
  // yaml-cpp 0.7 starts a document again and again at a ',' (or another indicator) it cannot
  // place at the top of one, each an empty value, without reading on: YAML::LoadAll(",") never
  // returns and takes memory as it goes. A document that starts where the last one did is that.
  void OnDocumentStart(const YAML::Mark& mark) override {
    if (documents_ > 0 && mark.pos == last_document_.pos) {
      stop(mark,
           "YAML syntax error: nothing can be read from here (a ',' or another indicator "
           "out of place?); fix the text at this line and column");
    }
    if (documents_ == 1) second_document = mark;
    last_document_ = mark;
    ++documents_;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { value(mark, "~"); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { value(mark, "*"); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string& text) override {
    value(mark, text);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    open(mark, false);
  }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    open(mark, true);
  }
  void OnSequenceEnd() override { close(); }
  void OnMapEnd() override { close(); }

 private:
  struct Level {
    bool mapping;
    size_t children = 0;  // in a mapping, keys and values alike
    std::string key;      // a mapping's last key, if it was a scalar
  };

  void count(const YAML::Mark& mark) {
    if (++values_ > kMaxDocumentValues) {
      stop(mark, "the document holds more than " + std::to_string(kMaxDocumentValues) +
                     " values, the most a policy may hold; a policy names tenants and their "
                     "limits and grants, which is far fewer: move data elsewhere, or share "
                     "sections with YAML anchors");
    }
  }

  // Called before the value is added to its parent.
  std::string path() const {
    std::string text;
    for (const Level& level : levels_) {
      if (level.mapping) {
        if (level.children % 2 == 0 && &level == &levels_.back()) break;  // at a key
        if (!text.empty()) text += '.';
        text += level.key.substr(0, 64);
      } else {
        text += "[" +
                std::to_string(&level == &levels_.back() ? level.children : level.children - 1) +
                "]";
      }
    }
    return text;
  }

  void add_child(const std::string* key_text) {
    if (levels_.empty()) return;
    Level& parent = levels_.back();
    if (parent.mapping && parent.children % 2 == 0) parent.key = key_text ? *key_text : "?";
    ++parent.children;
  }

  void value(const YAML::Mark& mark, const std::string& text) {
    count(mark);
    add_child(&text);
  }

  void open(const YAML::Mark& mark, bool mapping) {
    count(mark);
    if (levels_.size() >= static_cast<size_t>(kMaxDocumentDepth)) {
      stop(mark, "the document nests deeper than " + std::to_string(kMaxDocumentDepth) +
                     " levels, the most a policy may (its own sections nest at most 7 deep); "
                     "write the value flatter");
    }
    add_child(nullptr);  // a mapping's key that is a collection is named "?"
    levels_.push_back({.mapping = mapping, .children = 0, .key = {}});
  }

  void close() { levels_.pop_back(); }

  [[noreturn]] void stop(const YAML::Mark& mark, std::string message) {
    Problem problem{path(), 0, 0, std::move(message)};
    if (!mark.is_null()) {
      problem.line = mark.line + 1;
      problem.column = mark.column + 1;
    }
    throw Passed{std::move(problem)};
  }

  size_t values_ = 0;
  std::vector<Level> levels_;
  size_t documents_ = 0;
  YAML::Mark last_document_;

 public:
  size_t documents() const { return documents_; }
  YAML::Mark second_document;
};

}  // namespace

std::optional<Problem> document_bounds_problem(std::string_view text) {
  if (auto passed = flow_depth_passes(text, kMaxDocumentDepth)) {
    return Problem{"", passed->line, passed->column,
                   "the document nests deeper than " + std::to_string(kMaxDocumentDepth) +
                       " levels of [ and {, the most a policy may (its own sections nest at "
                       "most 7 deep); write the value flatter"};
  }
  std::istringstream stream{std::string(text)};
  YAML::Parser parser(stream);
  ShapeCounter counter;
  try {
    while (parser.HandleNextDocument(counter)) {
    }
  } catch (const Passed& passed) {
    return passed.problem;
  } catch (const YAML::Exception&) {
    return std::nullopt;  // the parse that follows reports it, with its position
  }
  // Said here, since the parse that follows would read every document first.
  if (counter.documents() > 1) {
    const YAML::Mark& mark = counter.second_document;
    return Problem{"", mark.is_null() ? 0 : mark.line + 1, mark.is_null() ? 0 : mark.column + 1,
                   "the text holds " + std::to_string(counter.documents()) +
                       " YAML documents; a policy is one (remove the '---' separators)"};
  }
  return std::nullopt;
}

}  // namespace corral::policy
