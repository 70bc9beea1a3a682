// Anomaly alerts through a real corrald: a version that starts failing, and one that becomes ten
// times slower on the same inputs' kind, raise an alert that is logged (alert.raised), counted
// (corral_alerts_total), audited, and POSTed to the operator's webhook (--alert-webhook) with a
// signature the receiver checks independently; with alerts.contain: auto the version is also
// quarantined and an alias with auto_rollback moves back.
//
// Timing: windows are 2 s. The test waits out a window (2.2 s) once, after the healthy runs, so
// that they form the baseline; after that it runs until the alert comes (at most 60 runs), so a
// slow machine whose runs straddle a window still gets a full window of them. Nothing asserts how
// fast anything happens.
#include <gtest/gtest.h>

#include <chrono>
#include <regex>
#include <thread>

#include "jobs/webhook_receiver.h"
#include "registry/api_client.h"
#include "support/hmac.h"

namespace corral::testing {
namespace {

using nlohmann::json;

std::string policy(const std::string& contain) {
  return R"(tenants:
  acme:
    limits:
      fuel: 1000000000
      timeout_ms: 20000
    quotas:
      rate_per_second: 100000
      burst: 100000
      concurrency: 100
      cpu_ms_per_minute: 3600000
    alerts:
      window_seconds: 2
      min_runs: 10
      warmup_runs: 20
      contain: )" +
         contain + "\n";
}

// Fails when asked to; otherwise its work (and so its time and fuel) is what the input says.
constexpr const char* kWorker = R"(function handle(input, ctx)
  if input.fail then error("the upstream format changed") end
  local x = 0
  for i = 1, input.work do x = x + i % 7 end
  return {x = x}
end)";

class AlertsApiTest : public ::testing::Test {
 protected:
  void start(const std::string& contain) {
    corrald_ = std::make_unique<CorraldProcess>(
        std::vector<std::string>{"--alert-webhook", receiver_.url("/corral-alerts")});
    api_ = std::make_unique<ApiClient>(*corrald_);
    Answer stored = api_->put(api_->admin(), "/v1/policy", {{"document", policy(contain)}});
    ASSERT_EQ(stored.status, 201) << stored;
    tokens_ = api_->tenant_with_tokens("acme");
  }

  int64_t publish(const std::string& script, const std::string& source) {
    int64_t version = api_->publish(tokens_["publisher"], "acme", script, source);
    api_->approve(tokens_["reviewer"], "acme", script, version);
    return version;
  }

  // ?version=N, or the alias live with version 0.
  Answer invoke(const std::string& script, int64_t version, const json& input) {
    std::string target = "/v1/tenants/acme/scripts/" + script + "/invoke";
    if (version > 0) target += "?version=" + std::to_string(version);
    return api_->post(tokens_["invoker"], target, {{"input", input}});
  }

  // 25 healthy runs, then a window's wait: the version's baseline.
  void warm_up(const std::string& script, int64_t version, int64_t work) {
    for (int i = 0; i < 25; ++i) {
      Answer ran = invoke(script, version, {{"work", work}});
      ASSERT_EQ(ran.status, 200) << ran;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2200));
  }

  std::vector<json> alert_events(const std::string& rule) {
    std::vector<json> found;
    for (const auto& line : corrald_->log_lines())
      if (line.value("event", "") == "alert.raised" && line.value("rule", "") == rule)
        found.push_back(line);
    return found;
  }

  // Runs `input` until an alert of `rule` is logged; the answers, in order.
  std::vector<Answer> run_until_alert(const std::string& script, int64_t version, const json& input,
                                      const std::string& rule) {
    std::vector<Answer> answers;
    for (int i = 0; i < 60 && alert_events(rule).empty(); ++i)
      answers.push_back(invoke(script, version, input));
    return answers;
  }

  json audit(const std::string& action) {
    Answer entries = api_->get(api_->admin(), "/v1/audit?tenant=acme&action=" + action);
    EXPECT_EQ(entries.status, 200) << entries;
    return entries.body["entries"];
  }

  // The webhook's alerts of `rule`, each checked against the secret corrald keeps.
  std::vector<json> webhook_alerts(const std::string& rule) {
    std::string secret = read_text(corrald_->data_dir() / "alert-webhook.secret");
    while (!secret.empty() && secret.back() == '\n') secret.pop_back();
    EXPECT_EQ(secret.size(), 64u);
    std::vector<json> found;
    for (const auto& request : receiver_.requests()) {
      EXPECT_EQ(request.method, "POST");
      EXPECT_EQ(request.path, "/corral-alerts");
      std::smatch parts;
      std::string signature = request.headers.at("corral-signature");
      EXPECT_TRUE(std::regex_match(signature, parts, std::regex("t=(\\d+),v1=([0-9a-f]{64})")))
          << signature;
      EXPECT_EQ(parts[2].str(), hmac_hex(secret, parts[1].str() + "." + request.body))
          << "the alert's signature does not verify";
      json alert = json::parse(request.body);
      EXPECT_EQ(request.headers.at("corral-alert-id"), alert["id"]);
      if (alert["rule"] == rule) found.push_back(alert);
    }
    return found;
  }

  WebhookReceiver receiver_;
  std::unique_ptr<CorraldProcess> corrald_;
  std::unique_ptr<ApiClient> api_;
  std::map<std::string, std::string> tokens_;
};

TEST_F(AlertsApiTest, AVersionThatStartsFailingRaisesALoggedCountedAuditedAndSignedAlert) {
  ASSERT_NO_FATAL_FAILURE(start("none"));
  int64_t version = publish("parse", kWorker);
  ASSERT_NO_FATAL_FAILURE(warm_up("parse", version, 1000));
  EXPECT_EQ(corrald_->metric(R"(corral_alerts_total{rule="error_rate",state="raised"})"), 0);

  auto answers = run_until_alert("parse", version, {{"fail", true}, {"work", 1}}, "error_rate");
  ASSERT_FALSE(alert_events("error_rate").empty()) << "no alert after 60 failing runs";
  EXPECT_GE(answers.size(), 10u) << "raised before min_runs runs of the window";
  for (const auto& answer : answers) EXPECT_EQ(answer.body["outcome"], "script_error") << answer;

  json event = alert_events("error_rate")[0];
  EXPECT_EQ(event["level"], "warning");
  EXPECT_EQ(event["tenant"], "acme");
  EXPECT_EQ(event["script"], "parse");
  EXPECT_EQ(event["version"], version);
  EXPECT_EQ(event["contain"], "none");
  EXPECT_GT(event["value"].get<double>(), 0.2);
  EXPECT_EQ(event["baseline"], 0.0);
  EXPECT_EQ(event["setting"], "built-in default");  // error_rate_increase is not in the policy
  EXPECT_EQ(corrald_->metric(R"(corral_alerts_total{rule="error_rate",state="raised"})"), 1);
  EXPECT_EQ(corrald_->metric("corral_alerts_active"), 1);

  json entries = audit("alert.raised");
  ASSERT_EQ(entries.size(), 1u) << entries;
  EXPECT_EQ(entries[0]["target"],
            "/v1/tenants/acme/scripts/parse/versions/" + std::to_string(version));
  EXPECT_NE(entries[0]["reason"].get<std::string>().find("error_rate"), std::string::npos)
      << entries[0];

  ASSERT_TRUE(receiver_.wait_for(1, std::chrono::seconds(20))) << "no webhook";
  auto sent = webhook_alerts("error_rate");
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0]["event"], "alert.raised");
  EXPECT_EQ(sent[0]["tenant"], "acme");
  EXPECT_EQ(sent[0]["script"], "parse");
  EXPECT_EQ(sent[0]["version"], version);

  // Not contained: the version still runs.
  EXPECT_EQ(invoke("parse", version, {{"work", 1}}).status, 200);
  EXPECT_EQ(corrald_->metric("corral_breakers_open"), 0);
}

TEST_F(AlertsApiTest, AVersionTenTimesSlowerRaisesTheLatencyAlert) {
  ASSERT_NO_FATAL_FAILURE(start("none"));
  int64_t version = publish("report", kWorker);
  // Work taking a few milliseconds, then 25 times as much, so that the wall time is over ten
  // times as long whatever a run costs besides its work: the same version, slower (3 ms and
  // about 75 ms; small enough that a window of 2 s holds min_runs slow runs even under the
  // sanitizers). Ten times was too close to the rule's factor of 3 over the baseline's p99 under
  // the sanitizers on a loaded machine, where the fast runs' p99 reached a third of a slow run.
  ASSERT_NO_FATAL_FAILURE(warm_up("report", version, 100'000));
  ASSERT_TRUE(alert_events("latency_p99").empty());
  auto answers = run_until_alert("report", version, {{"work", 2'500'000}}, "latency_p99");
  ASSERT_FALSE(answers.empty());
  ASSERT_FALSE(alert_events("latency_p99").empty())
      << "no alert after 60 slow runs; a slow run took " << answers.back().body["stats"]
      << ", a fast one " << invoke("report", version, {{"work", 100'000}}).body["stats"];
  for (const auto& answer : answers) EXPECT_EQ(answer.status, 200) << answer;
  json event = alert_events("latency_p99")[0];
  EXPECT_EQ(event["version"], version);
  EXPECT_GT(event["value"].get<double>(), event["threshold"].get<double>());
  EXPECT_EQ(corrald_->metric(R"(corral_alerts_total{rule="latency_p99",state="raised"})"), 1);
  EXPECT_GE(audit("alert.raised").size(), 1u);
  ASSERT_TRUE(receiver_.wait_for(1, std::chrono::seconds(20)));
  // The fuel rule may come first (25 times the work is 25 times the fuel): wait for ours.
  for (int i = 0; i < 100 && webhook_alerts("latency_p99").empty(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(webhook_alerts("latency_p99").size(), 1u);
}

TEST_F(AlertsApiTest, ContainAutoQuarantinesTheVersionAndTheAliasRollsBack) {
  ASSERT_NO_FATAL_FAILURE(start("auto"));
  int64_t previous = publish("parse", kWorker);
  int64_t current = publish("parse", std::string(kWorker) + "\n-- v2");
  Answer set = api_->put(tokens_["reviewer"], "/v1/tenants/acme/scripts/parse/aliases/live",
                         {{"version", previous}});
  ASSERT_EQ(set.status, 200) << set;
  set = api_->put(tokens_["reviewer"], "/v1/tenants/acme/scripts/parse/aliases/live",
                  {{"version", current}, {"auto_rollback", true}});
  ASSERT_EQ(set.status, 200) << set;
  ASSERT_NO_FATAL_FAILURE(warm_up("parse", 0, 1000));

  auto answers = run_until_alert("parse", 0, {{"fail", true}, {"work", 1}}, "error_rate");
  ASSERT_FALSE(alert_events("error_rate").empty()) << "no alert after 60 failing runs";
  EXPECT_EQ(alert_events("error_rate")[0]["contain"], "auto");
  // The run that raised it answers that its alias moved.
  EXPECT_EQ(answers.back().body["auto_rollback"],
            json({{"alias", "live"}, {"from", current}, {"to", previous}}))
      << answers.back();

  // The alias serves the previous version now.
  Answer served = invoke("parse", 0, {{"work", 1}});
  ASSERT_EQ(served.status, 200) << served;
  EXPECT_EQ(served.body["version"], previous) << served;
  Answer refused = invoke("parse", current, {{"work", 1}});
  EXPECT_EQ(refused.status, 503) << refused;
  EXPECT_EQ(refused.body["type"], "urn:corral:problem:circuit-open") << refused;
  EXPECT_EQ(corrald_->metric("corral_breakers_open"), 1);

  json opened = audit("breaker.open");
  ASSERT_EQ(opened.size(), 1u) << opened;
  EXPECT_NE(opened[0]["reason"].get<std::string>().find("anomaly alert error_rate"),
            std::string::npos)
      << opened[0];
  EXPECT_EQ(audit("alias.auto_rollback").size(), 1u);
  bool logged = false;
  for (const auto& line : corrald_->log_lines())
    logged = logged || (line.value("event", "") == "alias.auto_rollback" && line["to"] == previous);
  EXPECT_TRUE(logged);
}

}  // namespace
}  // namespace corral::testing
