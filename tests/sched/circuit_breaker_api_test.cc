// Circuit breakers through a real corrald: a version that keeps exceeding its limits is
// quarantined (503 circuit-open, without running) after the policy's number of failures, a probe
// after the cool-down closes or reopens it, an alias with auto_rollback moves to the previous
// approved version by itself, and all of it is audited and counted. Healthy versions and other
// scripts are not affected.
//
// Timing: the cool-down is 1 s; the test waits 2 s past an opening before expecting a probe and
// asserts nothing about how soon a refusal comes beyond "before the cool-down ends" (3 runs
// exhausting 1000 instructions take milliseconds; a loaded machine still has a whole second).
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "registry/api_client.h"

namespace corral::testing {
namespace {

using nlohmann::json;

// Quotas lifted so that only the breaker refuses. The policy's fuel is small, so that a spin
// fails under the limits the policy gives the version: only such failures count against it.
constexpr const char* kPolicy = R"(tenants:
  acme:
    limits:
      fuel: 1000
    quotas:
      rate_per_second: 100000
      burst: 100000
      concurrency: 100
    circuit_breaker:
      failures: 3
      window_seconds: 60
      cooldown_seconds: 1
      probes: 1
)";

// Spins until its fuel runs out when asked to, answers otherwise.
constexpr const char* kSpinner = R"(function handle(input, ctx)
  if input.spin then while true do end end
  return {spun = false}
end)";

class CircuitBreakerApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    api_ = std::make_unique<ApiClient>(corrald_);
    Answer policy = api_->put(api_->admin(), "/v1/policy", {{"document", kPolicy}});
    ASSERT_EQ(policy.status, 201) << policy;
    tokens_ = api_->tenant_with_tokens("acme");
  }

  int64_t publish(const std::string& script, const std::string& source, bool approve = true) {
    int64_t version = api_->publish(tokens_["publisher"], "acme", script, source);
    if (approve) api_->approve(tokens_["reviewer"], "acme", script, version);
    return version;
  }

  Answer set_alias(const std::string& script, int64_t version, bool auto_rollback) {
    return api_->put(tokens_["reviewer"], "/v1/tenants/acme/scripts/" + script + "/aliases/live",
                     {{"version", version}, {"auto_rollback", auto_rollback}});
  }

  // ?version=N or, with version 0, the alias live.
  Answer invoke(const std::string& script, int64_t version, bool spin) {
    std::string target = "/v1/tenants/acme/scripts/" + script + "/invoke";
    if (version > 0) target += "?version=" + std::to_string(version);
    return api_->post(tokens_["invoker"], target, {{"input", {{"spin", spin}, {"n", 2}}}});
  }

  json audit(const std::string& action) {
    Answer entries = api_->get(api_->admin(), "/v1/audit?tenant=acme&action=" + action);
    EXPECT_EQ(entries.status, 200) << entries;
    return entries.body["entries"];
  }

  static std::string header(const Answer& answer, const char* name) {
    auto found = answer.response.find(name);
    return found == answer.response.end() ? "" : std::string(found->value());
  }

  CorraldProcess corrald_;
  std::unique_ptr<ApiClient> api_;
  std::map<std::string, std::string> tokens_;
};

// The review's attack: a caller lowers its own limits (output_bytes: 10) so that a healthy
// version fails for it, again and again. Those failures are the caller's: the breaker stays
// closed for every other caller, and an alias with auto_rollback does not move.
TEST_F(CircuitBreakerApiTest, FailuresUnderLimitsTheCallerLoweredDoNotCountAgainstTheVersion) {
  int64_t previous = publish("double", kDoubler);
  int64_t healthy = publish("double", std::string(kDoubler) + "\n-- v2");
  ASSERT_EQ(set_alias("double", previous, false).status, 200);
  ASSERT_EQ(set_alias("double", healthy, true).status, 200);
  for (int i = 0; i < 6; ++i) {
    Answer failed =
        api_->post(tokens_["invoker"], "/v1/tenants/acme/scripts/double/invoke",
                   {{"input", {{"n", 2}}}, {"limits", {{"output_bytes", 10}, {"fuel", 100}}}});
    ASSERT_EQ(failed.status, 422) << failed;
    ASSERT_EQ(failed.body["outcome"], "limit_exceeded") << failed;
  }
  Answer served = invoke("double", 0, false);
  ASSERT_EQ(served.status, 200) << "the caller's own failures quarantined the version: " << served;
  EXPECT_EQ(served.body["version"], healthy);
  EXPECT_FALSE(served.body.contains("auto_rollback")) << served;
  EXPECT_EQ(corrald_.metric("corral_breakers_open"), 0);
  EXPECT_EQ(audit("breaker.open").size(), 0u);
  // The same failures under the policy's own limits do count: three spins quarantine it.
  int64_t spinner = publish("spinner", kSpinner);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(invoke("spinner", spinner, true).status, 422);
  EXPECT_EQ(invoke("spinner", spinner, false).status, 503);
}

TEST_F(CircuitBreakerApiTest, RepeatedFailuresQuarantineTheVersionUntilAProbeSucceeds) {
  int64_t version = publish("spinner", kSpinner);
  int64_t healthy = publish("double", kDoubler);

  for (int i = 0; i < 3; ++i) {
    Answer failed = invoke("spinner", version, true);
    ASSERT_EQ(failed.status, 422) << failed;
    ASSERT_EQ(failed.body["outcome"], "limit_exceeded") << failed;
  }
  double ran_before = corrald_.metric(R"(corral_invocations_total{outcome="limit_exceeded"})");

  // Quarantined: refused at once, without running, naming the breaker.
  Answer refused = invoke("spinner", version, false);
  ASSERT_EQ(refused.status, 503) << refused;
  EXPECT_EQ(header(refused, "Content-Type"), "application/problem+json");
  EXPECT_EQ(refused.body["type"], "urn:corral:problem:circuit-open") << refused;
  EXPECT_EQ(refused.body["outcome"], "rejected");
  EXPECT_EQ(refused.body["breaker"]["script"], "spinner");
  EXPECT_EQ(refused.body["breaker"]["version"], version);
  EXPECT_EQ(refused.body["breaker"]["state"], "open");
  EXPECT_EQ(refused.body["breaker"]["failures_in_window"], 3);
  EXPECT_EQ(refused.body["breaker"]["rule"], "tenants.acme.circuit_breaker.failures");
  EXPECT_TRUE(refused.body["breaker"]["half_open_at"].is_string());
  EXPECT_FALSE(refused.body["hint"].get<std::string>().empty());
  EXPECT_EQ(header(refused, "Retry-After"), "1");
  EXPECT_EQ(refused.body["retry_after"], 1);
  EXPECT_EQ(corrald_.metric(R"(corral_invocations_total{outcome="limit_exceeded"})"), ran_before);
  EXPECT_EQ(corrald_.metric("corral_breaker_rejections_total"), 1);
  EXPECT_EQ(corrald_.metric("corral_breakers_open"), 1);

  // Another script of the tenant is not affected.
  Answer other = invoke("double", healthy, false);
  EXPECT_EQ(other.status, 200) << other;
  EXPECT_EQ(other.body["output"]["doubled"], 4);

  // After the cool-down one probe runs; it fails, so the breaker opens again.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  Answer probe = invoke("spinner", version, true);
  EXPECT_EQ(probe.status, 422) << probe;
  EXPECT_EQ(probe.body["outcome"], "limit_exceeded");
  Answer reopened = invoke("spinner", version, false);
  EXPECT_EQ(reopened.status, 503) << reopened;

  // The next probe succeeds and closes it: the version runs normally again.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  Answer healed = invoke("spinner", version, false);
  ASSERT_EQ(healed.status, 200) << healed;
  EXPECT_EQ(healed.body["output"]["spun"], false);
  EXPECT_EQ(invoke("spinner", version, false).status, 200);

  json opened = audit("breaker.open");
  ASSERT_EQ(opened.size(), 2u) << opened;
  EXPECT_EQ(opened[0]["principal"], "system");
  EXPECT_EQ(opened[0]["target"],
            "/v1/tenants/acme/scripts/spinner/versions/" + std::to_string(version));
  EXPECT_NE(opened[0]["reason"].get<std::string>().find("tenants.acme.circuit_breaker.failures"),
            std::string::npos)
      << opened;
  json closed = audit("breaker.close");
  ASSERT_EQ(closed.size(), 1u) << closed;
  EXPECT_EQ(closed[0]["principal"], "system");

  EXPECT_EQ(corrald_.metric(R"(corral_breaker_transitions_total{to="open"})"), 2);
  EXPECT_EQ(corrald_.metric(R"(corral_breaker_transitions_total{to="half_open"})"), 2);
  EXPECT_EQ(corrald_.metric(R"(corral_breaker_transitions_total{to="closed"})"), 1);
  EXPECT_EQ(corrald_.metric("corral_breakers_open"), 0);
}

TEST_F(CircuitBreakerApiTest, AnAutoRollbackAliasMovesToThePreviousApprovedVersion) {
  int64_t good = publish("orders", kDoubler);
  int64_t unapproved = publish("orders", "function handle() return {pending = true} end", false);
  int64_t bad = publish("orders", kSpinner);
  ASSERT_LT(good, unapproved);
  ASSERT_LT(unapproved, bad);
  Answer set = set_alias("orders", bad, true);
  ASSERT_EQ(set.status, 200) << set;
  EXPECT_EQ(set.body["auto_rollback"], true);
  EXPECT_TRUE(set.body["rolled_back_from"].is_null());

  Answer last;
  for (int i = 0; i < 3; ++i) {
    last = invoke("orders", 0, true);
    ASSERT_EQ(last.status, 422) << last;
    EXPECT_EQ(last.body["version"], bad);
  }
  // The run that opened the breaker says the alias moved.
  EXPECT_EQ(last.body["auto_rollback"], json({{"alias", "live"}, {"from", bad}, {"to", good}}))
      << last;

  // Later invocations of the alias run the previous approved version, and say so.
  Answer after = invoke("orders", 0, false);
  ASSERT_EQ(after.status, 200) << after;
  EXPECT_EQ(after.body["version"], good);
  EXPECT_EQ(after.body["alias"], "live");
  EXPECT_EQ(after.body["rolled_back_from"], bad);
  EXPECT_EQ(after.body["output"]["doubled"], 4);
  // The quarantined version itself is still refused when named.
  EXPECT_EQ(invoke("orders", bad, false).status, 503);

  Answer aliases = api_->get(tokens_["reviewer"], "/v1/tenants/acme/scripts/orders/aliases");
  ASSERT_EQ(aliases.status, 200) << aliases;
  ASSERT_EQ(aliases.body["aliases"].size(), 1u);
  EXPECT_EQ(aliases.body["aliases"][0]["version"], good);
  EXPECT_EQ(aliases.body["aliases"][0]["updated_by"], "system");
  EXPECT_EQ(aliases.body["aliases"][0]["rolled_back_from"], bad);
  EXPECT_EQ(aliases.body["aliases"][0]["auto_rollback"], true);

  json rollbacks = audit("alias.auto_rollback");
  ASSERT_EQ(rollbacks.size(), 1u) << rollbacks;
  EXPECT_EQ(rollbacks[0]["principal"], "system");
  EXPECT_EQ(rollbacks[0]["decision"], "allow");
  EXPECT_EQ(rollbacks[0]["target"], "/v1/tenants/acme/scripts/orders/aliases/live");
  EXPECT_NE(rollbacks[0]["reason"].get<std::string>().find("from version " + std::to_string(bad) +
                                                           " to " + std::to_string(good)),
            std::string::npos)
      << rollbacks;

  // A reviewer pointing the alias again clears the mark.
  Answer reset = set_alias("orders", good, false);
  ASSERT_EQ(reset.status, 200) << reset;
  EXPECT_TRUE(reset.body["rolled_back_from"].is_null());
  EXPECT_EQ(reset.body["auto_rollback"], false);
  Answer plain = invoke("orders", 0, false);
  EXPECT_EQ(plain.status, 200) << plain;
  EXPECT_FALSE(plain.body.contains("rolled_back_from")) << plain;
}

// Issue 26: live on v2 (bad) → moved back to v1 → set to v3 with auto_rollback → v3 fails. The
// alias goes back to v1, where it was before, not to v2, the highest approved version below v3,
// which a reviewer had moved it away from. Its history shows every step.
TEST_F(CircuitBreakerApiTest, AnAutoRollbackGoesBackToTheVersionTheAliasPointedAtBefore) {
  int64_t v1 = publish("orders", kDoubler);
  int64_t v2 = publish("orders", std::string(kSpinner) + "\n-- v2, the bad one");
  int64_t v3 = publish("orders", std::string(kSpinner) + "\n-- v3");
  ASSERT_EQ(set_alias("orders", v1, false).status, 200);
  ASSERT_EQ(set_alias("orders", v2, false).status, 200);
  ASSERT_EQ(set_alias("orders", v1, false).status, 200);
  ASSERT_EQ(set_alias("orders", v3, true).status, 200);

  Answer last;
  for (int i = 0; i < 3; ++i) {
    last = invoke("orders", 0, true);
    ASSERT_EQ(last.status, 422) << last;
  }
  EXPECT_EQ(last.body["auto_rollback"], json({{"alias", "live"}, {"from", v3}, {"to", v1}}))
      << last;
  Answer after = invoke("orders", 0, false);
  ASSERT_EQ(after.status, 200) << after;
  EXPECT_EQ(after.body["version"], v1);
  EXPECT_EQ(after.body["output"]["doubled"], 4);

  Answer history =
      api_->get(tokens_["auditor"], "/v1/tenants/acme/scripts/orders/aliases/live/history");
  ASSERT_EQ(history.status, 200) << history;
  const json& changes = history.body["history"];
  ASSERT_EQ(changes.size(), 5u) << history;
  // Newest first: the rollback, then each reviewer's put.
  std::vector<std::pair<json, int64_t>> moves = {
      {v3, v1}, {v1, v3}, {v2, v1}, {v1, v2}, {nullptr, v1}};
  for (size_t i = 0; i < moves.size(); ++i) {
    EXPECT_EQ(changes[i]["previous_version"], moves[i].first) << i << ": " << changes[i];
    EXPECT_EQ(changes[i]["version"], moves[i].second) << i << ": " << changes[i];
  }
  EXPECT_EQ(changes[0]["change"], "auto_rollback");
  EXPECT_EQ(changes[0]["changed_by"], "system");
  EXPECT_EQ(changes[1]["change"], "set");
  EXPECT_EQ(changes[1]["auto_rollback"], true);
  EXPECT_EQ(changes[2]["auto_rollback"], false);
  EXPECT_GT(changes[0]["seq"].get<int64_t>(), changes[1]["seq"].get<int64_t>());
  Answer limited =
      api_->get(tokens_["invoker"], "/v1/tenants/acme/scripts/orders/aliases/live/history?limit=2");
  ASSERT_EQ(limited.status, 200) << limited;
  EXPECT_EQ(limited.body["history"].size(), 2u);

  Answer missing =
      api_->get(tokens_["auditor"], "/v1/tenants/acme/scripts/orders/aliases/nope/history");
  EXPECT_EQ(missing.status, 404) << missing;
  EXPECT_NE(missing.body["detail"].get<std::string>().find("no alias \"nope\""), std::string::npos)
      << missing;
}

TEST_F(CircuitBreakerApiTest, WithNoApprovedVersionBelowTheAliasStaysAndTheFailureIsAudited) {
  int64_t only = publish("lonely", kSpinner);
  ASSERT_EQ(set_alias("lonely", only, true).status, 200);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(invoke("lonely", 0, true).status, 422);
  Answer refused = invoke("lonely", 0, false);
  EXPECT_EQ(refused.status, 503) << refused;
  EXPECT_EQ(refused.body["version"], only);
  json rollbacks = audit("alias.auto_rollback");
  ASSERT_EQ(rollbacks.size(), 1u) << rollbacks;
  EXPECT_EQ(rollbacks[0]["decision"], "deny");
  EXPECT_NE(rollbacks[0]["reason"].get<std::string>().find("stays"), std::string::npos)
      << rollbacks;
}

TEST_F(CircuitBreakerApiTest, AutoRollbackMustBeABoolean) {
  int64_t version = publish("double", kDoubler);
  Answer refused = api_->put(tokens_["reviewer"], "/v1/tenants/acme/scripts/double/aliases/live",
                             {{"version", version}, {"auto_rollback", "yes"}});
  EXPECT_EQ(refused.status, 400) << refused;
  EXPECT_EQ(refused.body["field"], "auto_rollback");
}

}  // namespace
}  // namespace corral::testing
