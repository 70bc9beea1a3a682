// Issue 27's logs and metrics through a real corrald (docs/observability.md): a request's log
// line names its tenant, script, version, alias, outcome, subject and invocation id; a breaker
// trip, an automatic rollback, a policy change and a quota refusal are log events of their own;
// /metrics carries per-tenant and per-script series, and their label set stays within
// --metrics-top. tests/metrics/attributed_series_test.cc counts the series under 10,000 tenants.
#include <gtest/gtest.h>

#include <set>
#include <sstream>

#include "registry/api_client.h"

namespace corral::testing {
namespace {

using nlohmann::json;

// Quotas lifted, so that only what a test sets refuses; the breaker of acme opens after 3
// failures under a small fuel limit.
constexpr const char* kPolicy = R"(defaults:
  quotas:
    rate_per_second: 100000
    burst: 100000
    concurrency: 100
tenants:
  acme:
    limits:
      fuel: 100000
    circuit_breaker:
      failures: 3
      window_seconds: 60
      cooldown_seconds: 60
      probes: 1
  tight:
    quotas:
      rate_per_second: 0.01
      burst: 1
      publishes_per_minute: 1
)";

constexpr const char* kSpinner = R"(function handle(input, ctx)
  if input.spin then while true do end end
  return {spun = false}
end)";

// Uses some fuel (it is counted in steps of a thousand instructions) and fails when asked to.
constexpr const char* kFailer = R"(function handle(input, ctx)
  local sum = 0
  for i = 1, 5000 do sum = sum + i end
  if input.fail then error("asked to fail") end
  return {n = input.n, sum = sum}
end)";

class ObservabilityTest : public ::testing::Test {
 protected:
  explicit ObservabilityTest(std::vector<std::string> flags = {}) : corrald_(std::move(flags)) {}

  void SetUp() override {
    api_ = std::make_unique<ApiClient>(corrald_);
    Answer policy = api_->put(api_->admin(), "/v1/policy", {{"document", kPolicy}});
    ASSERT_EQ(policy.status, 201) << policy;
  }

  // A tenant with tokens, and `script` published, approved and set as its alias live.
  std::map<std::string, std::string> tenant_with_script(const std::string& tenant,
                                                        const std::string& script,
                                                        const std::string& source) {
    auto tokens = api_->tenant_with_tokens(tenant);
    int64_t version = api_->publish(tokens["publisher"], tenant, script, source);
    api_->approve(tokens["reviewer"], tenant, script, version);
    api_->set_alias(tokens["reviewer"], tenant, script, "live", version);
    return tokens;
  }

  Answer invoke(const std::string& token, const std::string& tenant, const std::string& script,
                const json& input, const std::string& query = "") {
    return api_->post(token, "/v1/tenants/" + tenant + "/scripts/" + script + "/invoke" + query,
                      {{"input", input}});
  }

  std::string metrics_text() {
    HttpClient client(corrald_.host(), corrald_.port());
    return client.request(http::verb::get, "/metrics").body();
  }

  // Log lines with "event" == name, once at least `count` are there (or after a few seconds).
  std::vector<json> events(const std::string& name, size_t count = 1) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (;;) {
      std::vector<json> found;
      for (auto& line : corrald_.log_lines())
        if (line.value("event", "") == name) found.push_back(std::move(line));
      if (found.size() >= count || std::chrono::steady_clock::now() > deadline) return found;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  // The access-log line of a request with this member's value (null after a few seconds).
  json request_line(const std::string& member, const std::string& value) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (;;) {
      for (auto& line : corrald_.log_lines()) {
        if (line.value("msg", "") == "request" && line.value(member, "") == value) return line;
      }
      if (std::chrono::steady_clock::now() > deadline) return nullptr;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  CorraldProcess corrald_;
  std::unique_ptr<ApiClient> api_;
};

TEST_F(ObservabilityTest, AnInvocationsLogLineNamesTenantScriptVersionAliasOutcomeAndSubject) {
  auto tokens = tenant_with_script("acme", "echo", kFailer);
  Answer ok = invoke(tokens["invoker"], "acme", "echo", {{"n", 1}});
  ASSERT_EQ(ok.status, 200) << ok;
  json line = request_line("invocation_id", ok.body["invocation_id"]);
  ASSERT_TRUE(line.is_object()) << "no log line for " << ok.body["invocation_id"];
  EXPECT_EQ(line["route"], "/v1/tenants/{tenant}/scripts/{script}/invoke") << line;
  EXPECT_EQ(line["tenant"], "acme") << line;
  EXPECT_EQ(line["script"], "echo") << line;
  EXPECT_EQ(line["version"], 1) << line;
  EXPECT_EQ(line["alias"], "live") << line;
  EXPECT_EQ(line["outcome"], "ok") << line;
  EXPECT_EQ(line["subject"], "acme-invoker") << line;
  EXPECT_EQ(line["status"], 200) << line;

  // By version, failing: no alias, the version and the outcome it had.
  Answer failed = invoke(tokens["publisher"], "acme", "echo", {{"fail", true}}, "?version=1");
  ASSERT_EQ(failed.status, 422) << failed;
  line = request_line("invocation_id", failed.body["invocation_id"]);
  ASSERT_TRUE(line.is_object());
  EXPECT_EQ(line["version"], 1) << line;
  EXPECT_FALSE(line.contains("alias")) << line;
  EXPECT_EQ(line["outcome"], "script_error") << line;
  EXPECT_EQ(line["subject"], "acme-publisher") << line;

  // A request that is not an invocation names what it can: here, the tenant and its subject.
  Answer listed = api_->get(tokens["auditor"], "/v1/tenants/acme/scripts");
  ASSERT_EQ(listed.status, 200) << listed;
  line = request_line("route", "/v1/tenants/{tenant}/scripts");
  ASSERT_TRUE(line.is_object());
  EXPECT_EQ(line["tenant"], "acme") << line;
  EXPECT_EQ(line["subject"], "acme-auditor") << line;
  EXPECT_FALSE(line.contains("script")) << line;
}

TEST_F(ObservabilityTest, ABreakerTripAndItsAutomaticRollbackAreLogEvents) {
  auto tokens = tenant_with_script("acme", "spinner", kSpinner);
  int64_t bad = api_->publish(tokens["publisher"], "acme", "spinner", std::string(kSpinner) + "--");
  api_->approve(tokens["reviewer"], "acme", "spinner", bad);
  Answer alias = api_->put(tokens["reviewer"], "/v1/tenants/acme/scripts/spinner/aliases/live",
                           {{"version", bad}, {"auto_rollback", true}});
  ASSERT_EQ(alias.status, 200) << alias;
  EXPECT_TRUE(events("breaker.open", 0).empty());
  for (int i = 0; i < 3; ++i) {
    Answer spun = invoke(tokens["invoker"], "acme", "spinner", {{"spin", true}});
    ASSERT_EQ(spun.status, 422) << spun;
  }
  auto opened = events("breaker.open");
  ASSERT_EQ(opened.size(), 1u);
  EXPECT_EQ(opened[0]["level"], "warning");
  EXPECT_EQ(opened[0]["tenant"], "acme");
  EXPECT_EQ(opened[0]["script"], "spinner");
  EXPECT_EQ(opened[0]["version"], bad);
  EXPECT_EQ(opened[0]["from"], "closed");
  EXPECT_EQ(opened[0]["to"], "open");
  EXPECT_EQ(opened[0]["failures_in_window"], 3);
  EXPECT_FALSE(opened[0]["reason"].get<std::string>().empty());
  auto rolled = events("alias.auto_rollback");
  ASSERT_EQ(rolled.size(), 1u);
  EXPECT_EQ(rolled[0]["alias"], "live");
  EXPECT_EQ(rolled[0]["from"], bad);
  EXPECT_EQ(rolled[0]["to"], 1);
  // The refusals of the open breaker are counted against the script.
  Answer refused = invoke(tokens["invoker"], "acme", "spinner", {{"spin", false}},
                          "?version=" + std::to_string(bad));
  ASSERT_EQ(refused.status, 503) << refused;
  EXPECT_EQ(
      corrald_.metric(
          R"(corral_script_invocations_total{tenant="acme",script="spinner",outcome="rejected"})"),
      1);
  EXPECT_EQ(
      corrald_.metric(
          R"(corral_script_invocations_total{tenant="acme",script="spinner",outcome="limit_exceeded"})"),
      3);
}

TEST_F(ObservabilityTest, APolicyChangeAndItsRollbackAreLogEvents) {
  auto updated = events("policy.update");
  ASSERT_EQ(updated.size(), 1u) << "SetUp's PUT /v1/policy";
  EXPECT_EQ(updated[0]["policy_version"], 1);
  EXPECT_FALSE(updated[0]["changes"].empty()) << updated[0];
  EXPECT_FALSE(updated[0]["changed_by"].get<std::string>().empty()) << updated[0];
  Answer rolled = api_->post(api_->admin(), "/v1/policy/rollback", {{"version", 0}});
  ASSERT_EQ(rolled.status, 201) << rolled;
  auto rollbacks = events("policy.rollback");
  ASSERT_EQ(rollbacks.size(), 1u);
  EXPECT_EQ(rollbacks[0]["policy_version"], rolled.body["version"]);
  EXPECT_EQ(rollbacks[0]["rolled_back_to"], 0);
}

// A flood of refusals is one line at once; the rest are counted into one line per window.
TEST_F(ObservabilityTest, QuotaRefusalsAreThrottledLogEvents) {
  auto tokens = tenant_with_script("tight", "echo", kFailer);
  int refused = 0;
  for (int i = 0; i < 6; ++i) {
    Answer answer = invoke(tokens["invoker"], "tight", "echo", {{"n", i}});
    ASSERT_TRUE(answer.status == 200 || answer.status == 429) << answer;
    refused += answer.status == 429;
  }
  ASSERT_GE(refused, 4) << "a burst of 1 at 0.01/s lets at most 2 through";
  corrald_.log_lines_settled();
  auto logged = events("quota.refused");
  ASSERT_EQ(logged.size(), 1u) << "each refusal logged: " << logged.size();
  EXPECT_EQ(logged[0]["tenant"], "tight");
  EXPECT_EQ(logged[0]["quota"], "rate");
  EXPECT_EQ(logged[0]["count"], 1);
  EXPECT_EQ(logged[0]["rule"], "tenants.tight.quotas.rate_per_second");
  EXPECT_EQ(
      corrald_.metric(R"(corral_tenant_invocations_total{tenant="tight",outcome="rejected"})"),
      refused);
  // Publishing is a quota of its own, logged apart.
  for (int i = 0; i < 3; ++i) {
    Answer published = api_->post(
        tokens["publisher"], "/v1/tenants/tight/scripts/echo/versions",
        {{"source", std::string(kFailer) + "-- " + std::to_string(i)}, {"manifest", manifest()}});
    ASSERT_EQ(published.status, 429) << published;
  }
  logged = events("quota.refused", 2);
  ASSERT_EQ(logged.size(), 2u);
  EXPECT_EQ(logged[1]["quota"], "publishes_per_minute");
  EXPECT_EQ(logged[1]["rule"], "tenants.tight.quotas.publishes_per_minute");
}

TEST_F(ObservabilityTest, MetricsCarryPerTenantAndPerScriptSeries) {
  auto acme = tenant_with_script("acme", "echo", kFailer);
  auto beta = tenant_with_script("beta", "other", kFailer);
  for (int i = 0; i < 3; ++i)
    ASSERT_EQ(invoke(acme["invoker"], "acme", "echo", {{"n", i}}).status, 200);
  ASSERT_EQ(invoke(acme["invoker"], "acme", "echo", {{"fail", true}}).status, 422);
  ASSERT_EQ(invoke(beta["invoker"], "beta", "other", {{"n", 1}}).status, 200);
  EXPECT_EQ(corrald_.metric(R"(corral_tenant_invocations_total{tenant="acme",outcome="ok"})"), 3);
  EXPECT_EQ(
      corrald_.metric(R"(corral_tenant_invocations_total{tenant="acme",outcome="script_error"})"),
      1);
  EXPECT_EQ(corrald_.metric(
                R"(corral_script_invocations_total{tenant="acme",script="echo",outcome="ok"})"),
            3);
  EXPECT_EQ(corrald_.metric(
                R"(corral_script_invocations_total{tenant="beta",script="other",outcome="ok"})"),
            1);
  EXPECT_EQ(corrald_.metric(
                R"(corral_script_invocation_duration_seconds_count{tenant="acme",script="echo"})"),
            4);
  EXPECT_GT(corrald_.metric(R"(corral_script_fuel_total{tenant="acme",script="echo"})"), 0);
  EXPECT_GT(corrald_.metric(R"(corral_tenant_memory_peak_bytes_max{tenant="acme"})"), 0);
  EXPECT_GE(corrald_.metric(R"(corral_tenant_cpu_seconds_total{tenant="acme"})"), 0);
  EXPECT_GT(corrald_.metric("process_resident_memory_bytes"), 0);
  EXPECT_GT(corrald_.metric("process_open_fds"), 0);
  EXPECT_GT(corrald_.metric("process_start_time_seconds"), 1.7e9);
  EXPECT_NE(metrics_text().find("\ncorral_build_info{version=\"0.1.0\",commit=\""),
            std::string::npos);
}

class ObservabilityBoundTest : public ObservabilityTest {
 protected:
  ObservabilityBoundTest() : ObservabilityTest({"--metrics-top", "2"}) {}

  std::set<std::string> tenant_labels() {
    std::set<std::string> tenants;
    std::istringstream lines(metrics_text());
    for (std::string line; std::getline(lines, line);) {
      constexpr std::string_view kFamily = "corral_tenant_invocations_total{tenant=\"";
      if (!line.starts_with(kFamily)) continue;
      tenants.insert(line.substr(kFamily.size(), line.find('"', kFamily.size()) - kFamily.size()));
    }
    return tenants;
  }
};

// --metrics-top 2: the first tenant gets a series at once, a busy one the other, and every later
// tenant, however busy, is counted under "other".
TEST_F(ObservabilityBoundTest, TheLabelSetStaysWithinMetricsTop) {
  std::vector<std::map<std::string, std::string>> tokens;
  for (int i = 0; i < 5; ++i) {
    tokens.push_back(tenant_with_script("t" + std::to_string(i), "echo", kFailer));
    auto& invoker = tokens.back()["invoker"];
    ASSERT_EQ(invoke(invoker, "t" + std::to_string(i), "echo", {{"n", i}}).status, 200);
  }
  EXPECT_EQ(tenant_labels(), (std::set<std::string>{"t0", "other"}));
  EXPECT_EQ(corrald_.metric(R"(corral_tenant_invocations_total{tenant="other",outcome="ok"})"), 4);
  // Busy: t3 proves it at its 20th invocation and keeps its series from then on.
  for (int i = 0; i < 25; ++i)
    ASSERT_EQ(invoke(tokens[3]["invoker"], "t3", "echo", {{"n", i}}).status, 200);
  EXPECT_EQ(tenant_labels(), (std::set<std::string>{"t0", "t3", "other"}));
  EXPECT_EQ(corrald_.metric(R"(corral_tenant_invocations_total{tenant="t3",outcome="ok"})"), 7);
  // Full: t4 as busy gets none.
  for (int i = 0; i < 25; ++i)
    ASSERT_EQ(invoke(tokens[4]["invoker"], "t4", "echo", {{"n", i}}).status, 200);
  EXPECT_EQ(tenant_labels(), (std::set<std::string>{"t0", "t3", "other"}));
  EXPECT_EQ(corrald_.metric(R"(corral_tenant_invocations_total{tenant="other",outcome="ok"})"),
            4 + 18 + 25);
}

}  // namespace
}  // namespace corral::testing
