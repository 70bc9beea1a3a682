// The one parser of JSON from outside the process (invocation/untrusted_json.h).
#include "invocation/untrusted_json.h"

#include <gtest/gtest.h>

#include <string>

#include "invocation/invocation.h"

namespace corral {
namespace {

using nlohmann::json;

// The InvalidRequest that parsing `text` throws; fails the test if it parses or throws another.
InvalidRequest refusal_of(const std::string& text, int max_depth = kMaxDocumentDepth) {
  try {
    parse_untrusted_json(text, max_depth);
  } catch (const InvalidRequest& refused) {
    return refused;
  } catch (const std::exception& other) {
    ADD_FAILURE() << "threw something else: " << other.what();
    return InvalidRequest("", "");
  }
  ADD_FAILURE() << "parsed: " << text.substr(0, 200);
  return InvalidRequest("", "");
}

bool mentions(const InvalidRequest& error, const std::string& text) {
  return std::string(error.what()).find(text) != std::string::npos;
}

TEST(UntrustedJsonStrict, ParsesWhatThePlainParserParses) {
  for (const char* text :
       {R"({"a": [1, -2, 18446744073709551615, 2.5e300, {"b": "x [ { \" ] }"}], "c": null})",
        R"([true, false, "\u00e9", {}, [], 1e-400])", R"("just a string")", "42",
        R"({"a": {"a": {"a": 1}}, "b": [{"a": 1}, {"a": 2}]})"}) {
    EXPECT_EQ(parse_untrusted_json(text), json::parse(text)) << text;
  }
}

TEST(UntrustedJsonStrict, ADuplicateKeyIsRefusedWithItsPath) {
  auto top = refusal_of(R"({"role": "admin", "role": "invoker"})");
  EXPECT_EQ(top.where, "role");
  EXPECT_TRUE(mentions(top, "\"role\" appears twice")) << top.what();

  auto deep = refusal_of(R"({"input": {"items": [{"id": 1}, {"id": 2, "x": 0, "id": 3}]}})");
  EXPECT_EQ(deep.where, "input.items[1].id");

  // The same key in different objects, or in an object and its parent, is not a duplicate.
  EXPECT_NO_THROW(parse_untrusted_json(R"({"a": {"a": 1}, "b": [{"a": 1}, {"a": 2}]})"));
  // Keys that differ only once escapes are decoded are the same key.
  EXPECT_EQ(refusal_of(R"({"r\u006fle": 1, "role": 2})").where, "role");
}

TEST(UntrustedJsonStrict, ANumberPastADoubleIsRefusedWithItsPathNotTheLibrarysMessage) {
  auto exponent = refusal_of(R"({"input": {"amount": 1e309}})");
  EXPECT_EQ(exponent.where, "input.amount");
  EXPECT_TRUE(mentions(exponent, "1e309")) << exponent.what();
  EXPECT_TRUE(mentions(exponent, "outside the range of a double")) << exponent.what();
  EXPECT_FALSE(mentions(exponent, "number overflow")) << exponent.what();

  auto digits = refusal_of(R"({"list": [0, )" + std::string(5000, '9') + "]}");
  EXPECT_EQ(digits.where, "list[1]");
  EXPECT_LT(std::string(digits.what()).size(), 400u) << "the number is shown cut";

  EXPECT_EQ(refusal_of("-1e400").where, "body");
  // Within the range: taken, however many digits it has.
  EXPECT_NO_THROW(parse_untrusted_json("[" + std::string(300, '9') + "]"));
}

TEST(UntrustedJsonStrict, NestingIsBoundedAndNamedWhileParsing) {
  std::string deep = std::string(100'000, '[') + std::string(100'000, ']');
  auto refused = refusal_of(deep, 128);
  EXPECT_TRUE(mentions(refused, "nests deeper than 128 levels")) << refused.what();
  EXPECT_EQ(refused.where.substr(0, 12), "[0][0][0][0]");
  EXPECT_LE(refused.where.size(), 128 + std::string("…").size()) << "a deep path is cut";
  EXPECT_TRUE(refused.where.ends_with("][0]…")) << refused.where;
  EXPECT_EQ(refusal_of(R"({"a": {"b": {"c": {}}}})", 3).where, "a.b.c");
  EXPECT_NO_THROW(parse_untrusted_json(R"({"a": {"b": {"c": {}}}})", 4));
}

TEST(UntrustedJsonStrict, TextThatIsNotJsonIsStillAParseError) {
  EXPECT_THROW(parse_untrusted_json(R"({"a": )"), json::parse_error);
  EXPECT_THROW(parse_untrusted_json("[1] [2]"), json::parse_error);
  EXPECT_THROW(parse_untrusted_json("{\"a\": 1,}"), json::parse_error);
  EXPECT_THROW(parse_untrusted_json(""), json::parse_error);
}

// The words a client reads for text that is not JSON: where it breaks, never the library's text.
std::string syntax_error_of(const std::string& text) {
  try {
    parse_untrusted_json(text);
  } catch (const json::parse_error& error) {
    return describe_json_syntax_error(error, text);
  }
  ADD_FAILURE() << "parsed: " << text;
  return "";
}

TEST(UntrustedJsonStrict, ASyntaxErrorIsDescribedByWhereItBreaks) {
  EXPECT_EQ(syntax_error_of("{\"a\": 1,\n \"b\": x}"),
            "it breaks at line 2, column 7 (byte 16), at 'x'");
  EXPECT_EQ(syntax_error_of("[\"\xff\"]"),
            "it breaks at line 1, column 3 (byte 3), at the byte 0xff (JSON text is UTF-8)");
  // A sequence that a plain byte breaks is said to be one: "caf" then 0xc3 then '('.
  EXPECT_EQ(
      syntax_error_of("\"caf\xc3\x28\""),
      "it breaks at line 1, column 6 (byte 6), at '(', which ends a byte sequence that is not "
      "valid UTF-8 (JSON text is UTF-8)");
  std::string cut = syntax_error_of(R"({"a": [1, 2)");
  EXPECT_TRUE(cut.starts_with("the text ends before the JSON does (after 11 bytes)")) << cut;
  EXPECT_EQ(syntax_error_of("").find("json.exception"), std::string::npos);
}

}  // namespace
}  // namespace corral
