// Issue 24, item 10: a policy's nesting and size are bounded before yaml-cpp builds its tree, so
// that a small document cannot make corrald hold tens of megabytes (policy/document_bounds.h).
#include "policy/document_bounds.h"

#include <gtest/gtest.h>
#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "policy/policy.h"

namespace corral::policy {
namespace {

std::string deep_flow(int depth) {
  return std::string(static_cast<size_t>(depth), '[') +
         std::string(static_cast<size_t>(depth), ']');
}

// The only problem Policy::parse finds in `yaml`.
Problem only_problem(const std::string& yaml) {
  try {
    Policy::parse(yaml);
  } catch (const PolicyInvalid& invalid) {
    EXPECT_EQ(invalid.problems().size(), 1u) << invalid.what();
    return invalid.problems().front();
  }
  ADD_FAILURE() << "the policy was accepted";
  return {};
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(FlowDepth, IsCountedWhereYamlOpensACollection) {
  EXPECT_FALSE(flow_depth_passes("a: " + deep_flow(4), 4));
  auto passed = flow_depth_passes("a: 1\nb:\n  c: " + deep_flow(5), 4);
  ASSERT_TRUE(passed);
  EXPECT_EQ(passed->line, 3);
  EXPECT_EQ(passed->column, 10);                                     // the fifth '['
  EXPECT_TRUE(flow_depth_passes("--- " + deep_flow(5), 4));          // after a document marker
  EXPECT_TRUE(flow_depth_passes("a: &x !!seq " + deep_flow(5), 4));  // after an anchor and tag
  EXPECT_TRUE(flow_depth_passes("- - " + deep_flow(5), 4));          // after sequence entries
  EXPECT_TRUE(flow_depth_passes(R"({"a":[[[[1]]]]})", 4));           // JSON-like keys
  EXPECT_TRUE(flow_depth_passes("a: [\n[\n [\n  [\n[1]]]]]", 4));    // across lines
  // yaml-cpp takes a token wherever one can start: an anchor after a closed collection, and a
  // comment without a blank before it; and a block scalar at the top ends at column 0.
  EXPECT_TRUE(flow_depth_passes("[]&x\n    " + deep_flow(5), 4));
  EXPECT_TRUE(flow_depth_passes("[#>]|2\n  " + deep_flow(5), 4));
  EXPECT_TRUE(flow_depth_passes(">\n" + deep_flow(5), 4));
  // A plain scalar at the top goes on at column 0, as yaml-cpp reads it: its brackets are text.
  EXPECT_FALSE(flow_depth_passes("ab\n" + deep_flow(5), 4));
  // ...but one after a node closed on its line is a document of its own, ended by column 0.
  EXPECT_TRUE(flow_depth_passes("'q' x\n" + deep_flow(5), 4));
}

TEST(FlowDepth, BracketsThatAreTextAreNotCounted) {
  std::string many(40, '[');
  EXPECT_FALSE(flow_depth_passes("a: \"" + many + "\"\n", 4));
  EXPECT_FALSE(flow_depth_passes("a: '" + many + " it''s'\n", 4));
  EXPECT_FALSE(flow_depth_passes("a: 1 # " + many + "\n", 4));
  EXPECT_FALSE(flow_depth_passes("a: x" + many + "\n", 4));  // a plain scalar's text
  EXPECT_FALSE(flow_depth_passes("a: |\n  " + many + "\n  " + many + "\nb: 1\n", 4));
  EXPECT_FALSE(flow_depth_passes("a: [\"]]]]\", '" + many + "']\n", 4));
}

// Text that a careless reading would take for an open quote or a block scalar, so as to skip the
// nesting that follows it.
TEST(FlowDepth, NestingCannotHideBehindWhatLooksLikeAQuote) {
  std::string deep = deep_flow(8);
  // A quote inside a plain scalar, continued on the next line, opens nothing.
  EXPECT_TRUE(flow_depth_passes("a: x\n  '\nb: " + deep + "\nc: '\n", 4));
  EXPECT_TRUE(flow_depth_passes("a: it's\nb: " + deep + "\nc: '\n", 4));
  // A quoted '[' is closed by its quote; what follows is read again.
  EXPECT_TRUE(flow_depth_passes("a: \"[\"\nb: " + deep + "\nc: \"\n", 4));
  EXPECT_TRUE(flow_depth_passes("a: 'x''\nb: " + deep + "\nc: '\n", 4) ||
              flow_depth_passes("a: 'x'''\nb: " + deep + "\n", 4));
  // A block scalar ends at the first line indented no more than its parent.
  EXPECT_TRUE(flow_depth_passes("a: |\n  '\nb: " + deep + "\nc: '\n", 4));
  EXPECT_TRUE(flow_depth_passes("- k: |\n    x\n  j: " + deep + "\n", 4));
  // A comment's '#' needs a blank before it; inside a flow collection a quote closes first.
  EXPECT_TRUE(flow_depth_passes("a: [\"#\", " + deep + "]\n", 4));
  EXPECT_TRUE(flow_depth_passes("a: x#" + std::string("\nb: ") + deep + "\n", 4));
}

// The flow collections yaml-cpp opens for a text, as its events show them: a sequence whose
// mark is a '[' or a mapping whose mark is a '{' (not the one-pair mappings it makes for "[a: b]",
// which start where their key does).
class FlowDepthSeen : public YAML::EventHandler {
 public:
  explicit FlowDepthSeen(const std::string& text) : text_(text) {}
  int deepest = 0;

  void OnDocumentStart(const YAML::Mark& mark) override {
    if (documents_++ > 0 && mark.pos == last_document_) throw StopReading();  // its endless loop
    last_document_ = mark.pos;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value style) override {
    open(mark, style, '[');
  }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value style) override {
    open(mark, style, '{');
  }
  void OnSequenceEnd() override { close(); }
  void OnMapEnd() override { close(); }

  struct StopReading {};

 private:
  void open(const YAML::Mark& mark, YAML::EmitterStyle::value style, char bracket) {
    bool flow = style == YAML::EmitterStyle::Flow && mark.pos >= 0 &&
                static_cast<size_t>(mark.pos) < text_.size() && text_[mark.pos] == bracket &&
                mark.pos != last_open_;
    last_open_ = mark.pos;
    open_.push_back(flow);
    if (flow) deepest = std::max(deepest, ++depth_);
  }
  void close() {
    if (open_.back()) --depth_;
    open_.pop_back();
  }

  const std::string& text_;
  std::vector<bool> open_;
  int depth_ = 0;
  int last_open_ = -1;
  int documents_ = 0;
  int last_document_ = -1;
};

// A differential test: random texts of YAML's indicators, scalars, quotes, comments, anchors and
// line breaks, each read by yaml-cpp and by flow_depth_passes. Where yaml-cpp opened flow
// collections three deep, the scan must have seen more than two: a text on which it saw fewer
// would be a way to hide nesting from it.
TEST(FlowDepth, NeverSeesLessThanYamlCppOpens) {
  const std::vector<std::string> pieces = {
      "[",   "]",   "{",     "}",    ", ",   ",",    ": ",     ":",    "- ",   "-",
      "'",   "\"",  " #",    "#",    "\n",   "\n  ", "\n    ", " ",    "a",    "b c",
      "|",   ">",   "|2",    "&x ",  "!t ",  "*x",   "? ",     "\\",   "''",   "---",
      "...", "\t",  "key: ", "\n- ", "x'",   " '",   "\"\\\"", "[a, ", "{k: ", "[[",
      " [",  "\n[", "a[",    "&a[",  "]&x ", "} ",   "x: ["};
  std::mt19937 random(24);
  int deep = 0;
  for (int round = 0; round < 100'000; ++round) {
    std::string text;
    for (size_t count = 1 + random() % 40; count > 0; --count)
      text += pieces[random() % pieces.size()];
    FlowDepthSeen seen(text);
    std::istringstream stream(text);
    try {
      YAML::Parser parser(stream);
      while (parser.HandleNextDocument(seen)) {
      }
    } catch (...) {  // a syntax error: what was opened before it still counts
    }
    if (seen.deepest <= 2) continue;
    ++deep;
    EXPECT_TRUE(flow_depth_passes(text, 2))
        << "yaml-cpp opened " << seen.deepest << " flow collections in:\n"
        << text;
  }
  EXPECT_GT(deep, 50) << "the random texts should nest now and then";
}

TEST(DocumentBounds, BlockNestingPastTheBoundIsAProblemWithItsPlace) {
  std::string yaml = "defaults:\n";
  for (int i = 1; i <= kMaxDocumentDepth + 5; ++i) {
    yaml += std::string(static_cast<size_t>(i) * 2, ' ') + "k" + std::to_string(i) + ":\n";
  }
  Problem problem = only_problem(yaml);
  EXPECT_TRUE(contains(problem.message, "nests deeper than 32 levels")) << problem.message;
  EXPECT_TRUE(contains(problem.message, "write the value flatter")) << problem.message;
  EXPECT_TRUE(problem.path.starts_with("defaults.k1.k2.k3")) << problem.path;
  EXPECT_GT(problem.line, 30);
}

TEST(DocumentBounds, TooManyValuesIsAProblemNamingTheBound) {
  std::string yaml = "defaults:\n  capabilities:\n    emit:\n      topics:\n";
  for (size_t i = 0; i < kMaxDocumentValues; ++i) yaml += "        - t\n";
  Problem problem = only_problem(yaml);
  EXPECT_TRUE(contains(problem.message, "more than 50000 values")) << problem.message;
  EXPECT_EQ(problem.path,
            "defaults.capabilities.emit.topics[" + std::to_string(kMaxDocumentValues - 9) + "]");
}

TEST(DocumentBounds, TheExamplePolicyIsWithinThem) {
  std::ifstream file(std::string(CORRAL_SOURCE_DIR) + "/examples/policy.yaml");
  std::stringstream text;
  text << file.rdbuf();
  ASSERT_FALSE(text.str().empty());
  EXPECT_FALSE(document_bounds_problem(text.str()));
  EXPECT_NO_THROW(Policy::parse(text.str()));
}

// What Policy::parse says of `yaml`, read in a child process that is killed after 2 s: a parse
// that never ends fails the test instead of hanging it (and its memory is given back).
std::string problem_within_two_seconds(const std::string& yaml) {
  int fds[2];
  if (pipe(fds) != 0) return "pipe failed";
  pid_t child = fork();
  if (child == 0) {
    alarm(2);
    std::string said = "accepted";
    try {
      Policy::parse(yaml);
    } catch (const PolicyInvalid& invalid) {
      said = invalid.what();
    }
    ssize_t written = write(fds[1], said.data(), said.size());
    _exit(written == static_cast<ssize_t>(said.size()) ? 0 : 1);
  }
  close(fds[1]);
  std::string said;
  char buffer[4096];
  for (ssize_t got; (got = read(fds[0], buffer, sizeof buffer)) > 0;) said.append(buffer, got);
  close(fds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return said;
}

// yaml-cpp 0.7 starts documents without end at a ',' it cannot place (YAML::LoadAll(",") took
// 500 MB a second until the process was killed): a 1-byte PUT /v1/policy could take corrald down.
TEST(DocumentBounds, AStrayCommaIsASyntaxErrorNotAnEndlessParse) {
  for (const std::string& yaml : {std::string(","), std::string("- a\n,\n"),
                                  std::string("defaults: {}\n,\n"), std::string(", |2 #\n")}) {
    std::string said = problem_within_two_seconds(yaml);
    EXPECT_TRUE(contains(said, "YAML syntax error") || contains(said, "end of map not found"))
        << yaml << ": " << said;
    EXPECT_FALSE(contains(said, "killed by signal")) << yaml << ": " << said;
  }
  std::string two = problem_within_two_seconds("defaults: {}\n---\ntenants: {}\n");
  EXPECT_TRUE(contains(two, "(line 2, column 1): the text holds 2 YAML documents")) << two;
}

// The process's peak resident memory (VmHWM), in KiB.
long peak_kib() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.starts_with("VmHWM:")) return std::stol(line.substr(6));
  }
  return -1;
}

// How far parsing `yaml` as a policy raised the peak resident memory (KiB). Free memory the
// allocator kept from earlier tests is given back first, so that the parse cannot hide in it,
// and the peak is reset to the present (clear_refs 5, Linux 4.0).
long parse_peak_kib(const std::string& yaml) {
  malloc_trim(0);
  {
    std::ofstream reset("/proc/self/clear_refs");
    reset << "5";
    if (!reset.flush()) return -1;
  }
  long before = peak_kib();
  try {
    Policy::parse(yaml);
  } catch (const PolicyInvalid&) {
  }
  return peak_kib() - before;
}

// The review's case: 200 KB of nesting held 28 MB while yaml-cpp read it.
TEST(DocumentBounds, DeepPoliciesAreRefusedWithoutTheMemory) {
  std::string flow = "defaults: " + deep_flow(100'000);
  Problem problem = only_problem(flow);
  EXPECT_TRUE(contains(problem.message, "nests deeper than 32 levels of [ and {"))
      << problem.message;
  EXPECT_EQ(problem.line, 1);
  EXPECT_EQ(problem.column, 11 + kMaxDocumentDepth);

  std::string block = "defaults:\n";
  for (int i = 1; block.size() < 200'000; ++i) {
    block += std::string(static_cast<size_t>(i), ' ') + "k:\n";
  }
  EXPECT_TRUE(contains(only_problem(block).message, "nests deeper than 32 levels"));

  long flow_kib = parse_peak_kib(flow);
  long block_kib = parse_peak_kib(block);
  ASSERT_GE(flow_kib, 0);
  ASSERT_GE(block_kib, 0);
  // The text itself is 200 KB, copied a few times; yaml-cpp's tokens for it were 28 MB.
  EXPECT_LT(flow_kib, 4 * 1024) << "KiB held reading 200 KB of flow nesting";
  std::cout << "peak growth: " << flow_kib << " KiB (flow), " << block_kib << " KiB (block)\n";
  EXPECT_LT(block_kib, 4 * 1024) << "KiB held reading 200 KB of block nesting";
}

}  // namespace
}  // namespace corral::policy
