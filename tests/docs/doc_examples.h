// The runnable examples of a markdown document, and how a shown output is compared with a real
// one. The docs are the source of the doc tests (tests/docs/docs_test.cc): a fenced block is an
// example when an HTML comment right above its opening fence says what to do with it,
//
//   <!-- test: run -->             a sh block: run by bash in the document's workspace; exits 0
//   <!-- test: run, exits 1 -->    … and must exit with this status
//   <!-- test: file NAME -->       the block's text is saved as NAME in the workspace
//   <!-- test: output -->          what the run block before it printed on stdout
//   <!-- test: stderr -->          … on stderr
//   <!-- test: policy -->          a YAML policy corrald must accept (PUT /v1/policy)
//
// An output may add `varies PATH…` (`<!-- test: output, varies stats.wall_ms -->`): JSON values
// at those paths are not compared. The comment does not show when the markdown is rendered.
#pragma once

#include <filesystem>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace corral::testing::docs {

enum class Action { run, file, output, stderr_output, policy };

struct Example {
  Action action = Action::run;
  int line = 0;           // of the marker, counting from 1
  std::string language;   // the fence's info string up to the first space: "sh", "json", …
  std::string text;       // the block's lines, each ending in '\n'
  std::string file_name;  // file
  int exit_status = 0;    // run
  std::set<std::string> varying_paths;  // output, stderr
};

// A marker that is not followed by a fenced block, names no known action, or an output that
// follows no run block: the message names the document's line.
class BadMarker : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The examples in the order they appear. Throws BadMarker.
std::vector<Example> examples_in(const std::string& markdown);

// Whether a document holds any marker at all (cheap: for listing the documents to test).
bool has_examples(const std::string& markdown);

// Where `shown` (an output block) and `actual` (what the program printed) differ, or nothing when
// they agree. When `shown` is JSON (after `…` standing for a value is read as a wildcard: `{…}`,
// `[…]`, or `…` alone), `actual` must be the same JSON: the same members, the same types (3 and
// 3.0 differ) and values, where "…" matches any value and a string holding `…` matches any text
// in its place; `varying` paths (`stats.wall_ms`, `items[0].id`) are not compared. Otherwise the
// two are compared line by line, `…` matching any text within a line and a line of `…` alone any
// number of lines, trailing blanks and blank lines at either end ignored.
std::optional<std::string> difference(const std::string& shown, const std::string& actual,
                                      const std::set<std::string>& varying = {});

}  // namespace corral::testing::docs
