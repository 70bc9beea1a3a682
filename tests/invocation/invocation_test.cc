// The shared result shape: what the worker writes is what the supervisor accepts, and anything
// else from a worker is refused with the field named.
#include "invocation/invocation.h"

#include <gtest/gtest.h>

namespace corral {
namespace {

TEST(ResultJson, RoundTripsEveryOutcomeShape) {
  InvocationResult limit;
  limit.outcome = Outcome::limit_exceeded;
  limit.invocation_id = "abc";
  limit.limit = LimitKind::memory;
  limit.used = 10;
  limit.allowed = 5;
  limit.message = "memory limit exceeded";
  limit.logs = {{"info", "x"}};
  auto parsed = result_from_json(to_json(limit));
  EXPECT_EQ(parsed.outcome, Outcome::limit_exceeded);
  EXPECT_EQ(parsed.limit, LimitKind::memory);
  EXPECT_EQ(parsed.used, 10);
  EXPECT_EQ(parsed.logs, limit.logs);
  EXPECT_EQ(to_json(parsed), to_json(limit));

  InvocationResult ok;
  ok.outcome = Outcome::ok;
  ok.invocation_id = "id";
  ok.output = {{"sum", 3}};
  EXPECT_EQ(to_json(result_from_json(to_json(ok))), to_json(ok));
}

TEST(ResultJson, TextOfAnOutputGivenAsTextIsTheSameResult) {
  InvocationResult as_value;
  as_value.outcome = Outcome::ok;
  as_value.invocation_id = "id";
  as_value.output = {{"sum", 3}, {"note", "caf\u00e9"}};
  as_value.logs = {{"info", "output: null"}};
  InvocationResult as_text = as_value;
  as_text.output = nullptr;
  as_text.output_json = as_value.output.dump();
  EXPECT_EQ(nlohmann::json::parse(to_json_text(as_text)), to_json(as_value));
  EXPECT_EQ(to_json_text(as_value), to_json(as_value).dump());
  // Only an ok result carries an output.
  as_text.outcome = Outcome::script_error;
  as_text.message = "boom";
  EXPECT_FALSE(nlohmann::json::parse(to_json_text(as_text)).contains("output"));
}

TEST(ResultJson, RefusesMalformedResultsNamingTheField) {
  InvocationResult ok;
  ok.outcome = Outcome::ok;
  ok.invocation_id = "id";
  auto good = to_json(ok);
  auto expect_refused = [](nlohmann::json json, const std::string& mentions) {
    try {
      result_from_json(json);
      ADD_FAILURE() << "accepted " << json.dump();
    } catch (const std::invalid_argument& error) {
      EXPECT_NE(std::string(error.what()).find(mentions), std::string::npos) << error.what();
    }
  };
  auto broken = good;
  broken["outcome"] = "pwned";
  expect_refused(broken, "outcome");
  broken = good;
  broken.erase("stats");
  expect_refused(broken, "stats");
  broken = good;
  broken["stats"]["fuel_used"] = "lots";
  expect_refused(broken, "fuel_used");
  broken = good;
  broken["logs"] = {{{"level", 1}, {"message", "x"}}};
  expect_refused(broken, "level");
  broken = good;
  broken["outcome"] = "limit_exceeded";
  broken["error"] = {{"message", "x"}};
  expect_refused(broken, "limit");
  expect_refused(nlohmann::json::array(), "not an object");
}

TEST(Outcomes, MapToHttpStatuses) {
  EXPECT_EQ(http_status(Outcome::ok), 200);
  EXPECT_EQ(http_status(Outcome::script_error), 422);
  EXPECT_EQ(http_status(Outcome::limit_exceeded), 422);
  EXPECT_EQ(http_status(Outcome::denied), 403);
  EXPECT_EQ(http_status(Outcome::rejected), 429);
  EXPECT_EQ(http_status(Outcome::invalid), 400);
  EXPECT_EQ(http_status(Outcome::crashed), 500);
  for (auto outcome : {Outcome::ok, Outcome::crashed, Outcome::invalid}) {
    EXPECT_EQ(outcome_from_string(to_string(outcome)), outcome);
  }
}

TEST(LogEntries, LongerMessagesAreCutAtACharacterBoundaryAndMarked) {
  InvocationResult result;
  result.logs = {
      {"info", "0123456789abc"},  // 13 bytes: cut to 10
      {"info", "0123456789"},     // exactly 10: kept
      {"warn", "short"},
      {"info", "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"},  // 12 bytes of two-byte characters
      {"info", "123456789\u00e9"}};                      // the cut would split the last character
  cut_log_entries(result, 10);
  EXPECT_EQ(result.logs[0].message, "0123456789\u2026");
  EXPECT_EQ(result.logs[1].message, "0123456789");
  EXPECT_EQ(result.logs[2].message, "short");
  EXPECT_EQ(result.logs[3].message, "\u00e9\u00e9\u00e9\u00e9\u00e9\u2026");
  EXPECT_EQ(result.logs[4].message, "123456789\u2026");
  EXPECT_EQ(result.logs[0].level, "info");
  EXPECT_EQ(result.logs[2].level, "warn");
}

TEST(LogEntries, ACapOfZeroOrLessCutsNothing) {
  for (int64_t cap : {0, -1}) {
    InvocationResult result;
    result.logs = {{"info", std::string(5000, 'x')}};
    cut_log_entries(result, cap);
    EXPECT_EQ(result.logs[0].message.size(), 5000u) << "cap " << cap;
  }
}

TEST(InvocationId, IsRandomHex) {
  auto a = new_invocation_id();
  EXPECT_EQ(a.size(), 32u);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_NE(a, new_invocation_id());
}

TEST(UntrustedJson, ParsesWhatThePlainParserParses) {
  std::string text =
      R"({"a": [1, 2.5, {"b": "x [ { \" ] }"}], "c": null, "d": "\\", "e": "\u00e9"})";
  EXPECT_EQ(parse_untrusted_json(text), nlohmann::json::parse(text));
}

std::string nested_arrays(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

TEST(UntrustedJson, RefusesNestingPastTheLimitAndTakesItUpToTheLimit) {
  EXPECT_EQ(parse_untrusted_json(nested_arrays(5), 5), nlohmann::json::parse(nested_arrays(5)));
  try {
    parse_untrusted_json(nested_arrays(6), 5);
    FAIL() << "six levels should be refused at a limit of five";
  } catch (const InvalidRequest& error) {
    EXPECT_NE(std::string(error.what()).find("nests deeper than 5 levels"), std::string::npos)
        << error.what();
  }
  EXPECT_THROW(parse_untrusted_json(R"({"a": {"b": {"c": {}}}})", 3), InvalidRequest);
  EXPECT_NO_THROW(parse_untrusted_json(R"({"a": {"b": {"c": {}}}})", 4));
}

TEST(UntrustedJson, BracketsInStringsAndEscapedQuotesDoNotCountAsNesting) {
  std::string brackets(300, '[');
  auto parsed = parse_untrusted_json("[\"" + brackets + "\"]", 1);
  EXPECT_EQ(parsed[0], brackets);
  // An escaped quote does not end the string: what follows it is still text.
  EXPECT_EQ(parse_untrusted_json(R"(["\"[[[{{{", 1])", 1)[1], 1);
  // An escaped backslash does: the quote after it ends the string, and the array after counts.
  EXPECT_THROW(parse_untrusted_json(R"(["\\", [[1]]])", 2), InvalidRequest);
  EXPECT_NO_THROW(parse_untrusted_json(R"(["\\", [[1]]])", 3));
}

TEST(UntrustedJson, MalformedTextIsAParseErrorDeepOrNot) {
  EXPECT_THROW(parse_untrusted_json(R"({"a": )"), nlohmann::json::parse_error);
  EXPECT_THROW(parse_untrusted_json("[x]"), nlohmann::json::parse_error);
  // Malformed before it would nest too deep: the parse error, as the parser meets it first.
  EXPECT_THROW(parse_untrusted_json("[x, [[[[[[1]]]]]]]", 3), nlohmann::json::parse_error);
  // Too deep before it goes wrong: refused for its depth.
  EXPECT_THROW(parse_untrusted_json("[[[[[[x", 3), InvalidRequest);
  // An unterminated string hides no nesting from the parser.
  EXPECT_THROW(parse_untrusted_json("[\"[[[[[[", 3), nlohmann::json::parse_error);
}

}  // namespace
}  // namespace corral
