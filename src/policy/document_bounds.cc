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

// The text is read as yaml-cpp's scanner reads it, since what it takes for a token is what costs:
// outside a scalar or a comment, every character that is not blank starts a token, and a '[' or
// '{' there opens a flow collection wherever it stands (after an anchor, after a closed
// collection). Inside a plain scalar ('a[b', a key, text continued on a more indented line) and a
// quoted or block scalar, brackets are text. A reading that diverged from the scanner's could
// hide flow nesting inside what it takes for a scalar, so each scalar ends where the scanner ends
// it: a plain one at ': ', ' #', a line indented no more than its collection, and in a flow
// collection at ',', '[', ']', '{' or '}'; a quoted one at its unescaped quote; a block one at the
// first line indented no more than its parent.
std::optional<DepthPassed> flow_depth_passes(std::string_view text, int max_depth) {
  const size_t n = text.size();
  size_t i = 0;
  size_t line_begin = 0;
  int line = 1;
  int depth = 0;            // open flow collections
  bool in_plain = false;    // inside a plain scalar
  bool after_space = true;  // the previous character was blank, or this is a line's start
  bool after_json = false;  // after a quoted scalar or a flow end, ':' is an indicator
  int owner = -1;           // block context: the column where the current node started
  int plain_parent = -1;    // a plain scalar goes on over lines indented more than this
  // The indentation of each open block collection, innermost last: a plain scalar goes on, and a
  // block scalar's text is, what is indented more than the innermost (-1: none, the document's
  // top).
  std::vector<int> blocks;
  // A node at the top closed on this line (a quoted scalar, a flow collection): a plain scalar
  // after it on the line is a document of its own to yaml-cpp, which goes on only over lines
  // indented more than the top.
  bool closed_on_line = false;
  auto top = [&] { return blocks.empty() ? -1 : blocks.back(); };
  auto open_block = [&](int at) {
    if (at > top()) blocks.push_back(at);
  };
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
  auto is_flow_indicator = [](char c) {
    return c == ',' || c == '[' || c == ']' || c == '{' || c == '}';
  };

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
      std::string_view rest = text.substr(first);
      bool marker = indent == 0 && (rest.starts_with("---") || rest.starts_with("...")) &&
                    (rest.size() == 3 || is_blank(rest[3]));
      if (marker) {
        // A document marker ends everything open, as the scanner ends it.
        i = first + 3;
        in_plain = false;
        owner = -1;
        blocks.clear();
        after_space = true;
        continue;
      }
      if (depth == 0) {
        if (blank) {
          next_line(eol);
          continue;
        }
        if (indent == 0 && rest.starts_with('%')) {  // a directive
          next_line(eol);
          continue;
        }
        if (!(in_plain && indent > plain_parent && text[first] != '#')) {
          in_plain = false;
          owner = indent;
          while (!blocks.empty() && blocks.back() > indent) blocks.pop_back();
        }
      }
      i = first;
      after_space = true;
      closed_on_line = false;
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

    // A comment, to the end of the line: after a blank, or (as yaml-cpp's scanner reads it)
    // wherever a token could start.
    if (c == '#' && (was_after_space || !in_plain)) {
      in_plain = false;
      i = end_of_line(i);
      continue;
    }
    if (in_plain) {
      // What ends a plain scalar is a token of its own; anything else is its text.
      bool value = c == ':' && (is_blank(next) || (depth > 0 && is_flow_indicator(next)));
      if (!value && !(depth > 0 && is_flow_indicator(c))) {
        ++i;
        continue;
      }
      in_plain = false;
    }
    if (c == '"' || c == '\'') {
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
      after_json = true;
      if (depth == 0 && blocks.empty()) closed_on_line = true;
      continue;
    }
    if (c == '&' || c == '!' || c == '*') {  // anchor, tag or alias: a token to a blank
      while (i < n && !is_blank(text[i]) && !is_flow_indicator(text[i])) ++i;
      after_json = false;
      continue;
    }
    if (c == '[' || c == '{') {
      if (++depth > max_depth) return DepthPassed{line, column() + 1};
      after_json = false;
      ++i;
      continue;
    }
    if (c == ']' || c == '}') {
      if (depth > 0) --depth;
      if (depth == 0 && blocks.empty()) closed_on_line = true;
      after_json = true;
      ++i;
      continue;
    }
    if (c == ',') {
      after_json = false;
      ++i;
      continue;
    }
    if (c == ':' && (is_blank(next) || (depth > 0 && (after_json || is_flow_indicator(next))))) {
      if (depth == 0) open_block(owner);  // a block mapping at its first key's column
      after_json = false;
      ++i;
      continue;
    }
    if ((c == '-' || c == '?') && is_blank(next)) {
      if (depth == 0) {
        owner = column();
        open_block(owner);
      }
      ++i;
      continue;
    }
    if ((c == '|' || c == '>') && depth == 0) {
      block_scalar = true;
      block_parent = std::max(top(), 0);  // at the top, yaml-cpp wants the text indented too
      block_indent = -1;
      size_t eol = end_of_line(i);
      for (size_t k = i + 1; k < eol && text[k] != ' ' && text[k] != '#'; ++k) {
        if (text[k] >= '1' && text[k] <= '9')
          block_indent = std::max(0, block_parent) + (text[k] - '0');
      }
      i = eol;
      continue;
    }
    // The start of a plain scalar.
    if (depth == 0) {
      plain_parent = closed_on_line ? std::max(top(), 0) : top();
      owner = column();
    }
    in_plain = true;
    after_json = false;
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
