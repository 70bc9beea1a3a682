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

TEST(InvocationId, IsRandomHex) {
  auto a = new_invocation_id();
  EXPECT_EQ(a.size(), 32u);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_NE(a, new_invocation_id());
}

}  // namespace
}  // namespace corral
