// The API's request parsing and response shapes, without a network.
#include "api/responses.h"

#include <gtest/gtest.h>

namespace {

using corral::api::parse_run_request;

corral::LimitsPolicy policy;

std::string where_it_fails(const std::string& body) {
  try {
    parse_run_request(body, policy, "id");
  } catch (const corral::InvalidRequest& error) {
    return error.where;
  } catch (const std::invalid_argument&) {
    return "not json";
  }
  return "accepted";
}

TEST(RunRequest, TakesSourceInputAndLimits) {
  auto request = parse_run_request(R"({"source":"x","input":{"a":[1,2]},"limits":{"fuel":5000}})",
                                   policy, "abc");
  EXPECT_EQ(request.invocation_id, "abc");
  EXPECT_EQ(request.source, "x");
  EXPECT_EQ(request.input, nlohmann::json::parse(R"({"a":[1,2]})"));
  EXPECT_EQ(request.limits.fuel, 5000);
  EXPECT_EQ(request.limits.memory_bytes, policy.defaults.memory_bytes);
}

TEST(RunRequest, InputDefaultsToNull) {
  EXPECT_TRUE(parse_run_request(R"({"source":"x"})", policy, "i").input.is_null());
}

TEST(RunRequest, RefusesWhatIsNotAStrictRunBody) {
  EXPECT_EQ(where_it_fails(R"({"source":"x","inptu":1})"), "inptu");
  EXPECT_EQ(where_it_fails(R"({"input":1})"), "source");
  EXPECT_EQ(where_it_fails(R"({"source":7})"), "source");
  EXPECT_EQ(where_it_fails(R"(["source"])"), "body");
  EXPECT_EQ(where_it_fails(R"({"source":"x","limits":{"fuel":0}})"), "limits.fuel");
  EXPECT_EQ(where_it_fails(R"({"source":"x","limits":{"fuel":1e20}})"), "limits.fuel");
  EXPECT_EQ(where_it_fails(R"({"source":"x","limits":{"memory_bytes":999999999999}})"),
            "limits.memory_bytes");
  EXPECT_EQ(where_it_fails(R"({"source":"x","limits":{"cpu":1}})"), "limits.cpu");
  EXPECT_EQ(where_it_fails(R"({"source":"x",)"), "not json");
  EXPECT_EQ(where_it_fails(""), "not json");
}

TEST(RunRequest, RefusesNestingThatCouldExhaustTheHostStack) {
  std::string deep =
      R"({"source":"x","input":)" + std::string(100000, '[') + std::string(100000, ']') + "}";
  EXPECT_TRUE(where_it_fails(deep).starts_with("input[0][0]")) << where_it_fails(deep);
  std::string shallow =
      R"({"source":"x","input":)" + std::string(100, '[') + std::string(100, ']') + "}";
  EXPECT_EQ(where_it_fails(shallow), "accepted");
}

TEST(Problem, HasEveryRfc9457MemberAndTheExtras) {
  auto response = corral::api::problem(413, "body-too-large", "Too large", "what", "do this",
                                       "inv-1", {{"type", "must not win"}, {"limit", 10}});
  EXPECT_EQ(response.status, 413);
  EXPECT_EQ(response.content_type, "application/problem+json");
  auto body = nlohmann::json::parse(response.body);
  EXPECT_EQ(body["type"], "urn:corral:problem:body-too-large");
  EXPECT_EQ(body["title"], "Too large");
  EXPECT_EQ(body["status"], 413);
  EXPECT_EQ(body["detail"], "what");
  EXPECT_EQ(body["hint"], "do this");
  EXPECT_EQ(body["invocation_id"], "inv-1");
  EXPECT_EQ(body["limit"], 10);
}

TEST(RunResponse, OkIsThePlainResult) {
  corral::InvocationResult result;
  result.outcome = corral::Outcome::ok;
  result.invocation_id = "i";
  result.output = {{"sum", 3}};
  auto response = corral::api::run_response(result, policy);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.content_type, "application/json");
  EXPECT_EQ(nlohmann::json::parse(response.body), corral::to_json(result));
}

TEST(RunResponse, LimitExceededSaysWhichFieldToRaiseAndHowFar) {
  corral::InvocationResult result;
  result.outcome = corral::Outcome::limit_exceeded;
  result.invocation_id = "i";
  result.limit = corral::LimitKind::fuel;
  result.used = 1001;
  result.allowed = 1000;
  auto body = nlohmann::json::parse(corral::api::run_response(result, policy).body);
  EXPECT_EQ(body["status"], 422);
  EXPECT_EQ(body["type"], "urn:corral:problem:limit_exceeded");
  EXPECT_EQ(body["outcome"], "limit_exceeded");
  EXPECT_EQ(body["error"]["limit"], "fuel");
  EXPECT_NE(body["hint"].get<std::string>().find("limits.fuel"), std::string::npos) << body["hint"];
  EXPECT_NE(body["hint"].get<std::string>().find(std::to_string(policy.maxima.fuel)),
            std::string::npos);

  result.allowed = policy.maxima.fuel;
  body = nlohmann::json::parse(corral::api::run_response(result, policy).body);
  EXPECT_NE(body["hint"].get<std::string>().find("already at this server's maximum"),
            std::string::npos);

  // subrequests as every other limit: corrald's maximum, where it said 0.
  result.limit = corral::LimitKind::subrequests;
  result.used = 17;
  result.allowed = 16;
  body = nlohmann::json::parse(corral::api::run_response(result, policy).body);
  EXPECT_EQ(body["hint"],
            "make the script do less work, or raise limits.subrequests in the request (this server "
            "allows up to 1000)");
  result.allowed = policy.maxima.subrequests;
  body = nlohmann::json::parse(corral::api::run_response(result, policy).body);
  EXPECT_EQ(body["hint"],
            "make the script do less work: limits.subrequests is already at this server's maximum "
            "(1000)");
}

// A published version's limits are its tenant's policy's: a request may only lower them, so the
// hint never says to raise one in the request, and names the policy as where to raise it.
TEST(RunResponse, LimitExceededUnderATenantsPolicyPointsAtThePolicy) {
  corral::InvocationResult result;
  result.outcome = corral::Outcome::limit_exceeded;
  result.invocation_id = "i";
  result.limit = corral::LimitKind::fuel;
  result.used = 10'001'000;
  result.allowed = 10'000'000;
  corral::Limits tenant{.fuel = 10'000'000, .subrequests = 16};
  corral::LimitsPolicy from_policy{.defaults = tenant, .maxima = tenant};
  auto hint = [&] {
    return nlohmann::json::parse(corral::api::run_response(result, from_policy, {},
                                                           corral::api::LimitsFrom::tenant_policy)
                                     .body)["hint"]
        .get<std::string>();
  };
  EXPECT_EQ(hint(),
            "make the script do less work: limits.fuel is already the most this tenant's runs may "
            "have (10000000, from its policy); an operator can raise it in the policy "
            "(docs/policy.md, limits)");

  result.allowed = 1'000'000;  // the request asked for less
  EXPECT_EQ(hint(),
            "make the script do less work, or leave limits.fuel out of the request: the tenant's "
            "policy allows up to 10000000");

  result.limit = corral::LimitKind::subrequests;
  result.allowed = 16;
  EXPECT_NE(hint().find("limits.subrequests is already the most this tenant's runs may have (16"),
            std::string::npos)
      << hint();
}

TEST(RunResponse, EachFailureHasItsStatus) {
  corral::InvocationResult result;
  result.invocation_id = "i";
  result.message = "boom";
  for (auto [outcome, status] : {std::pair{corral::Outcome::script_error, 422},
                                 {corral::Outcome::invalid, 400},
                                 {corral::Outcome::crashed, 500}}) {
    result.outcome = outcome;
    auto response = corral::api::run_response(result, policy);
    EXPECT_EQ(response.status, status);
    auto body = nlohmann::json::parse(response.body);
    EXPECT_EQ(body["type"], "urn:corral:problem:" + std::string(corral::to_string(outcome)));
    EXPECT_FALSE(body["hint"].get<std::string>().empty());
    EXPECT_EQ(body["invocation_id"], "i");
  }
}

TEST(RunResponse, ARunTurnedAwayAfterAdmissionIsTheServers503WithRetryAfter) {
  corral::InvocationResult result;
  result.invocation_id = "i";
  result.outcome = corral::Outcome::rejected;
  result.message = "the worker pool is at its cap of 4 workers";
  result.retry_after_seconds = 5;
  auto response = corral::api::run_response(result, policy);
  EXPECT_EQ(response.status, 503);
  EXPECT_EQ(response.outcome, "rejected");
  ASSERT_EQ(response.headers.size(), 1u);
  EXPECT_EQ(response.headers[0].first, "Retry-After");
  EXPECT_EQ(response.headers[0].second, "5");
  auto body = nlohmann::json::parse(response.body);
  EXPECT_EQ(body["type"], "urn:corral:problem:no-worker");
  EXPECT_EQ(body["outcome"], "rejected");
  EXPECT_EQ(body["retry_after"], 5);
  EXPECT_EQ(body["detail"], result.message);
  EXPECT_NE(body["hint"].get<std::string>().find("again in 5 s"), std::string::npos) << body;

  // A rejection that forgot to say when still tells the client to wait a second, not none.
  result.retry_after_seconds = 0;
  EXPECT_EQ(corral::api::run_response(result, policy).headers[0].second, "1");
}

TEST(JsonLine, MembersAreEscapedIntoJsonThatParsesBackToTheirText) {
  std::string line = "{\"n\":1";
  corral::api::append_json_member(line, "plain", "/v1/run");
  corral::api::append_json_member(line, "quoted", "say \"hi\" \\ back");
  corral::api::append_json_member(line, "control", std::string("a\nb\tc\x01", 6));
  corral::api::append_json_member(line, "high", "caf\xc3\xa9");
  line += '}';
  auto parsed = nlohmann::json::parse(line);
  EXPECT_EQ(parsed["plain"], "/v1/run");
  EXPECT_EQ(parsed["quoted"], "say \"hi\" \\ back");
  EXPECT_EQ(parsed["control"], std::string("a\nb\tc\x01", 6));
  EXPECT_EQ(parsed["high"], "caf\ufffd\ufffd") << "non-ASCII bytes are replaced, never passed on";
  EXPECT_EQ(parsed["n"], 1);
}

}  // namespace
