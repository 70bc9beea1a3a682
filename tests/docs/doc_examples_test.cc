// The marker reader and the output comparison the doc tests rest on: each must be able to say
// no, or a doc test could pass whatever the docs say.
#include "docs/doc_examples.h"

#include <gtest/gtest.h>

namespace {

using namespace corral::testing::docs;

TEST(DocExamples, ReadsEachMarkedBlockInOrder) {
  auto examples = examples_in(
      "# Title\n"
      "```sh\nnot marked\n```\n"
      "<!-- test: file hello.lua -->\n"
      "```lua\nfunction handle() return 1 end\n```\n"
      "text\n"
      "<!-- test: run, exits 3 -->\n"
      "```sh title\ncorral run hello.lua\n```\n"
      "<!-- test: output, varies stats.wall_ms stats.cpu_ms -->\n"
      "````json\n{\"a\": 1}\n```\n````\n");
  ASSERT_EQ(examples.size(), 3u);
  EXPECT_EQ(examples[0].action, Action::file);
  EXPECT_EQ(examples[0].file_name, "hello.lua");
  EXPECT_EQ(examples[0].text, "function handle() return 1 end\n");
  EXPECT_EQ(examples[0].line, 5);
  EXPECT_EQ(examples[1].action, Action::run);
  EXPECT_EQ(examples[1].exit_status, 3);
  EXPECT_EQ(examples[1].language, "sh");
  EXPECT_EQ(examples[2].action, Action::output);
  EXPECT_EQ(examples[2].varying_paths, (std::set<std::string>{"stats.wall_ms", "stats.cpu_ms"}));
  EXPECT_EQ(examples[2].text, "{\"a\": 1}\n```\n");
}

TEST(DocExamples, RefusesAMarkerThatMarksNothingOrSaysNothingKnown) {
  EXPECT_THROW(examples_in("<!-- test: run -->\n\n```sh\nx\n```\n"), BadMarker);
  EXPECT_THROW(examples_in("<!-- test: runn -->\n```sh\nx\n```\n"), BadMarker);
  EXPECT_THROW(examples_in("<!-- test: run, exit 1 -->\n```sh\nx\n```\n"), BadMarker);
  EXPECT_THROW(examples_in("<!-- test: file ../x -->\n```sh\nx\n```\n"), BadMarker);
  EXPECT_THROW(examples_in("<!-- test: run -->\n```sh\nx\n"), BadMarker);
  EXPECT_THROW(examples_in("<!-- test: output -->\n```\nx\n```\n"), BadMarker);
  try {
    examples_in("a\nb\n<!-- test: policy -->\nyaml\n");
    FAIL() << "a marker above no block was accepted";
  } catch (const BadMarker& bad) {
    EXPECT_NE(std::string(bad.what()).find("line 3"), std::string::npos) << bad.what();
  }
  EXPECT_FALSE(has_examples("# no markers\n<!-- a comment -->\n"));
  EXPECT_TRUE(has_examples("x\n <!-- test: run -->\n"));
}

TEST(DocExamples, JsonMustAgreeInMembersTypesAndValues) {
  EXPECT_EQ(difference("{\"a\": 1, \"b\": [true, null]}", "{\"b\":[true,null],\"a\":1}\n"),
            std::nullopt);
  EXPECT_NE(difference("{\"a\": 1}", "{\"a\": 2}"), std::nullopt);
  EXPECT_NE(difference("{\"a\": 3}", "{\"a\": 3.0}"), std::nullopt);
  EXPECT_NE(difference("{\"a\": 1}", "{\"a\": 1, \"b\": 2}"), std::nullopt);
  EXPECT_NE(difference("{\"a\": 1, \"b\": 2}", "{\"a\": 1}"), std::nullopt);
  EXPECT_NE(difference("[1, 2]", "[1]"), std::nullopt);
  EXPECT_NE(difference("{\"a\": 1}", "not json"), std::nullopt);
  auto where = difference("{\"stats\": {\"fuel_used\": 1000}}", "{\"stats\": {\"fuel_used\": 0}}");
  ASSERT_TRUE(where);
  EXPECT_NE(where->find("stats.fuel_used"), std::string::npos) << *where;
}

TEST(DocExamples, EllipsesAndVaryingPathsAreNotCompared) {
  EXPECT_EQ(difference("{\"id\": \"…\", \"stats\": {…}, \"logs\": […], \"n\": …}",
                       "{\"id\": \"ab12\", \"stats\": {\"x\": 1}, \"logs\": [1], \"n\": 7}"),
            std::nullopt);
  EXPECT_EQ(difference("{\"detail\": \"tenant … has used …\"}",
                       "{\"detail\": \"tenant acme has used its burst\"}"),
            std::nullopt);
  EXPECT_NE(difference("{\"detail\": \"tenant … has used …\"}", "{\"detail\": \"tenant acme\"}"),
            std::nullopt);
  EXPECT_EQ(difference("{\"ms\": 0.09, \"items\": [{\"id\": 1}]}",
                       "{\"ms\": 3.5, \"items\": [{\"id\": 9}]}", {"ms", "items[0].id"}),
            std::nullopt);
  EXPECT_NE(difference("{\"ms\": 0.09}", "{\"ms\": 3.5}", {"other"}), std::nullopt);
  // An ellipsis inside a string is text, not a wildcard for a value of another type.
  EXPECT_NE(difference("{\"a\": \"x…\"}", "{\"a\": 1}"), std::nullopt);
}

TEST(DocExamples, TextIsComparedLineByLine) {
  EXPECT_EQ(difference("published acme/greeter version 1 (sha256 …), pending\n",
                       "\npublished acme/greeter version 1 (sha256 bca8519d3ca4…), pending  \n\n"),
            std::nullopt);
  EXPECT_NE(difference("a\nb\n", "a\n"), std::nullopt);
  EXPECT_NE(difference("a\n", "a\nb\n"), std::nullopt);
  EXPECT_NE(difference("approved …", "published x"), std::nullopt);
  // A line of … alone stands for any number of lines, none included.
  EXPECT_EQ(difference("a\n…\nz\n", "a\nb\nc\nz\n"), std::nullopt);
  EXPECT_EQ(difference("a\n…\nz\n", "a\nz\n"), std::nullopt);
  EXPECT_NE(difference("a\n…\nz\n", "a\nb\n"), std::nullopt);
  EXPECT_NE(difference("a\n…\n", "b\nc\n"), std::nullopt);
}

}  // namespace
