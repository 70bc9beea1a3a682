// Issue 6's result cache, canary splits, batch invocation, stored runs and replay, through a real
// corrald.
#include <gtest/gtest.h>

#include <map>

#include "registry/api_client.h"

namespace corral::testing {
namespace {

using nlohmann::json;

// Quotas lifted so that only what a test sets refuses; acme may use kv, bob's results are never
// cached, carol keeps inputs with her last 3 runs.
constexpr const char* kPolicy = R"(defaults:
  quotas: {rate_per_second: 100000, burst: 100000, concurrency: 100}
tenants:
  acme:
    limits: {batch_inputs: 4}
    capabilities:
      kv: {scope: tenant}
  bob:
    cache: {enabled: false}
  carol:
    runs: {keep: 3, inputs: true}
  dave:
    quotas: {rate_per_second: 0.001, burst: 2}
  erin:
    quotas: {rate_per_second: 0.001, burst: 5}
)";

// Declares itself deterministic but returns the CPU time it used: two real runs (almost) never
// agree on it, so an identical answer can only come from the cache.
constexpr const char* kClock = R"(function handle(input, ctx)
  local sum = 0
  for i = 1, 20000 do sum = sum + i end
  return {doubled = input.n * 2, clock = os.clock()}
end)";

constexpr const char* kTripler = "function handle(input, ctx) return {doubled = input.n * 3} end";

class ExecutionApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    api_ = std::make_unique<ApiClient>(corrald_);
    Answer policy = api_->put(api_->admin(), "/v1/policy", {{"document", kPolicy}});
    ASSERT_EQ(policy.status, 201) << policy;
  }

  std::map<std::string, std::string>& tenant(const std::string& name) {
    if (!tokens_.contains(name)) tokens_[name] = api_->tenant_with_tokens(name);
    return tokens_[name];
  }

  int64_t publish(const std::string& tenant_name, const std::string& script,
                  const std::string& source, bool deterministic,
                  json capabilities = json::array()) {
    auto& tokens = tenant(tenant_name);
    json manifest = corral::testing::manifest(capabilities);
    manifest["deterministic"] = deterministic;
    Answer published = api_->post(tokens["publisher"],
                                  "/v1/tenants/" + tenant_name + "/scripts/" + script + "/versions",
                                  {{"source", source}, {"manifest", manifest}});
    EXPECT_TRUE(published.status == 201 || published.status == 200) << published;
    int64_t version = published.body.value("version", int64_t{0});
    api_->approve(tokens["reviewer"], tenant_name, script, version);
    return version;
  }

  Answer invoke(const std::string& tenant_name, const std::string& script, const json& body,
                const std::string& query = "") {
    return api_->post(tenant(tenant_name)["invoker"],
                      "/v1/tenants/" + tenant_name + "/scripts/" + script + "/invoke" + query,
                      body);
  }

  static std::string header(const Answer& answer, const char* name) {
    auto found = answer.response.find(name);
    return found == answer.response.end() ? "" : std::string(found->value());
  }

  CorraldProcess corrald_;
  std::unique_ptr<ApiClient> api_;
  std::map<std::string, std::map<std::string, std::string>> tokens_;
};

TEST_F(ExecutionApiTest, ADeterministicVersionIsAnsweredFromTheCacheUntilANewVersion) {
  int64_t v1 = publish("acme", "clock", kClock, true);
  api_->set_alias(tenant("acme")["reviewer"], "acme", "clock", "live", v1);

  Answer first = invoke("acme", "clock", {{"input", {{"n", 2}}}});
  ASSERT_EQ(first.status, 200) << first;
  EXPECT_EQ(header(first, "Corral-Cache"), "miss");
  EXPECT_EQ(first.body["cache"], "miss");
  Answer second = invoke("acme", "clock", {{"input", {{"n", 2}}}});
  ASSERT_EQ(second.status, 200) << second;
  EXPECT_EQ(header(second, "Corral-Cache"), "hit");
  EXPECT_EQ(second.body["cache"], "hit");
  EXPECT_EQ(second.body["output"], first.body["output"]);
  EXPECT_NE(second.body["invocation_id"], first.body["invocation_id"]);
  // The same input with members in another order is the same key; another input is not.
  Answer reordered = invoke("acme", "clock", json::parse(R"({"input": {"n": 2}})"));
  EXPECT_EQ(header(reordered, "Corral-Cache"), "hit");
  Answer other = invoke("acme", "clock", {{"input", {{"n", 5}}}});
  EXPECT_EQ(header(other, "Corral-Cache"), "miss");
  EXPECT_EQ(other.body["output"]["doubled"], 10);

  // A new version, even with the same input, is a miss: its hash is another key.
  int64_t v2 = publish("acme", "clock", std::string(kClock) + "\n-- v2", true);
  api_->set_alias(tenant("acme")["reviewer"], "acme", "clock", "live", v2);
  Answer after_publish = invoke("acme", "clock", {{"input", {{"n", 2}}}});
  ASSERT_EQ(after_publish.status, 200) << after_publish;
  EXPECT_EQ(after_publish.body["version"], v2);
  EXPECT_EQ(header(after_publish, "Corral-Cache"), "miss");
  EXPECT_NE(after_publish.body["output"]["clock"], first.body["output"]["clock"]);

  EXPECT_GE(corrald_.metric(R"(corral_result_cache_lookups_total{result="hit"})"), 2);
  EXPECT_GE(corrald_.metric(R"(corral_result_cache_lookups_total{result="miss"})"), 3);
  EXPECT_GE(corrald_.metric("corral_result_cache_entries"), 3);
}

// The review's attack through corrald: tenant B publishes A's source and invokes it with A's
// input. B must run it itself (a miss, its own output), and A's callers must keep A's result.
TEST_F(ExecutionApiTest, ATenantPublishingAnothersSourceIsNeverServedTheOthersResults) {
  int64_t of_acme = publish("acme", "clock", kClock, true);
  api_->set_alias(tenant("acme")["reviewer"], "acme", "clock", "live", of_acme);
  int64_t of_carol = publish("carol", "copy", kClock, true);
  api_->set_alias(tenant("carol")["reviewer"], "carol", "copy", "live", of_carol);

  Answer acme_first = invoke("acme", "clock", {{"input", {{"n", 7}}}});
  ASSERT_EQ(acme_first.status, 200) << acme_first;
  Answer carol_probe = invoke("carol", "copy", {{"input", {{"n", 7}}}});
  ASSERT_EQ(carol_probe.status, 200) << carol_probe;
  EXPECT_EQ(header(carol_probe, "Corral-Cache"), "miss") << "carol was served acme's result";
  EXPECT_NE(carol_probe.body["output"]["clock"], acme_first.body["output"]["clock"]);
  // Carol's own run is cached for carol only: acme's callers still get acme's result.
  Answer acme_again = invoke("acme", "clock", {{"input", {{"n", 7}}}});
  EXPECT_EQ(header(acme_again, "Corral-Cache"), "hit");
  EXPECT_EQ(acme_again.body["output"], acme_first.body["output"]);
  Answer carol_again = invoke("carol", "copy", {{"input", {{"n", 7}}}});
  EXPECT_EQ(header(carol_again, "Corral-Cache"), "hit");
  EXPECT_EQ(carol_again.body["output"], carol_probe.body["output"]);
}

// A hit runs nothing but is still an invocation the quota counts: past the soft limit it carries
// the warning, and past the hard limit it is refused like any other.
TEST_F(ExecutionApiTest, ACacheHitCountsAgainstTheQuotaAndCarriesItsWarning) {
  int64_t v1 = publish("erin", "clock", kClock, true);
  api_->set_alias(tenant("erin")["reviewer"], "erin", "clock", "live", v1);
  std::vector<std::string> cache, warnings;
  for (int i = 0; i < 5; ++i) {
    Answer answer = invoke("erin", "clock", {{"input", {{"n", 2}}}});
    ASSERT_EQ(answer.status, 200) << answer;
    cache.push_back(header(answer, "Corral-Cache"));
    warnings.push_back(header(answer, "Corral-Quota-Warning"));
  }
  EXPECT_EQ(cache, (std::vector<std::string>{"miss", "hit", "hit", "hit", "hit"}));
  EXPECT_EQ(warnings, (std::vector<std::string>{"", "", "", "rate=80%", "rate=100%"}));
  Answer refused = invoke("erin", "clock", {{"input", {{"n", 2}}}});
  EXPECT_EQ(refused.status, 429) << refused;
}

// A cached result keeps its logs, and the log cap in force when it is served applies to them.
TEST_F(ExecutionApiTest, ACacheHitsLogsAreCutByTheLogCapInForceNow) {
  int64_t v1 = publish("frank", "chatty",
                       "function handle(input) print(string.rep('z', 100)) return input end", true);
  api_->set_alias(tenant("frank")["reviewer"], "frank", "chatty", "live", v1);
  Answer miss = invoke("frank", "chatty", {{"input", {{"n", 1}}}});
  ASSERT_EQ(miss.status, 200) << miss;
  EXPECT_EQ(header(miss, "Corral-Cache"), "miss");
  EXPECT_EQ(miss.body["logs"][0]["message"], std::string(100, 'z'));

  std::string capped =
      std::string(kPolicy) + "  frank:\n    capabilities:\n      log: {max_entry_bytes: 10}\n";
  Answer policy = api_->put(api_->admin(), "/v1/policy", {{"document", capped}});
  ASSERT_EQ(policy.status, 201) << policy;
  Answer hit = invoke("frank", "chatty", {{"input", {{"n", 1}}}});
  ASSERT_EQ(hit.status, 200) << hit;
  EXPECT_EQ(header(hit, "Corral-Cache"), "hit");
  EXPECT_EQ(hit.body["logs"][0]["message"], std::string(10, 'z') + "\u2026");
}

TEST_F(ExecutionApiTest,
       AScriptUsingACapabilityOrNotDeterministicOrOfATenantWithoutCacheIsNeverCached) {
  struct Case {
    std::string tenant;
    std::string script;
    bool deterministic;
    json capabilities;
  };
  for (const Case& item : {Case{"acme", "with-kv", true, json::array({"kv"})},
                           Case{"acme", "undeclared", false, json::array()},
                           Case{"bob", "switched-off", true, json::array()}}) {
    publish(item.tenant, item.script, kClock, item.deterministic, item.capabilities);
    std::set<std::string> clocks;
    for (int i = 0; i < 3; ++i) {
      Answer answer = invoke(item.tenant, item.script, {{"input", {{"n", 1}}}}, "?version=1");
      ASSERT_EQ(answer.status, 200) << answer;
      EXPECT_EQ(header(answer, "Corral-Cache"), "") << item.script;
      EXPECT_FALSE(answer.body.contains("cache")) << item.script;
      clocks.insert(answer.body["output"]["clock"].dump());
    }
    EXPECT_GT(clocks.size(), 1u) << item.script << ": every run should have been a real one";
  }
}

TEST_F(ExecutionApiTest, ACanaryTakesItsShareOfAnAliasAndEachResultSaysWhichRan) {
  auto& tokens = tenant("acme");
  int64_t v1 = publish("acme", "greet", kDoubler, false);
  int64_t v2 = publish("acme", "greet", kTripler, false);
  std::string alias = "/v1/tenants/acme/scripts/greet/aliases/live";
  Answer set = api_->put(tokens["reviewer"], alias,
                         {{"version", v1}, {"canary", {{"version", v2}, {"weight", 30}}}});
  ASSERT_EQ(set.status, 200) << set;
  EXPECT_EQ(set.body["canary"], json({{"version", v2}, {"weight", 30}}));
  Answer listed = api_->get(tokens["invoker"], "/v1/tenants/acme/scripts/greet/aliases");
  ASSERT_EQ(listed.status, 200) << listed;
  EXPECT_EQ(listed.body["aliases"][0]["canary"]["weight"], 30) << listed;

  std::map<int64_t, int> runs;
  const int total = 200;
  for (int i = 0; i < total; ++i) {
    Answer answer = invoke("acme", "greet", {{"input", {{"n", 1}}}});
    ASSERT_EQ(answer.status, 200) << answer;
    int64_t version = answer.body["version"];
    ++runs[version];
    EXPECT_EQ(answer.body["canary"], version == v2);
    EXPECT_EQ(answer.body["output"]["doubled"], version == v2 ? 3 : 2);
  }
  // 30 % of 200 is 60; the bounds are over 5 standard deviations wide.
  EXPECT_GT(runs[v2], 20) << "canary ran " << runs[v2] << " of " << total;
  EXPECT_LT(runs[v2], 100) << "canary ran " << runs[v2] << " of " << total;
  EXPECT_EQ(runs[v1] + runs[v2], total);
  EXPECT_EQ(corrald_.metric(R"(corral_canary_invocations_total{route="canary"})"), runs[v2]);

  // Setting the alias again without a canary ends the split.
  ASSERT_EQ(api_->put(tokens["reviewer"], alias, {{"version", v1}}).status, 200);
  for (int i = 0; i < 10; ++i) {
    Answer answer = invoke("acme", "greet", {{"input", {{"n", 1}}}});
    EXPECT_EQ(answer.body["version"], v1);
    EXPECT_FALSE(answer.body.contains("canary"));
  }
}

TEST_F(ExecutionApiTest, ACanaryMustBeAnotherApprovedVersionWithAWeightFrom1To99) {
  auto& tokens = tenant("acme");
  int64_t v1 = publish("acme", "greet", kDoubler, false);
  int64_t v2 = publish("acme", "greet", kTripler, false);
  Answer pending = api_->post(
      tokens["publisher"], "/v1/tenants/acme/scripts/greet/versions",
      {{"source", std::string(kTripler) + "\n-- 3"}, {"manifest", corral::testing::manifest()}});
  int64_t v3 = pending.body.value("version", int64_t{0});
  std::string alias = "/v1/tenants/acme/scripts/greet/aliases/live";
  auto try_canary = [&](json canary) {
    return api_->put(tokens["reviewer"], alias, {{"version", v1}, {"canary", canary}});
  };
  Answer zero = try_canary({{"version", v2}, {"weight", 0}});
  EXPECT_EQ(zero.status, 400) << zero;
  EXPECT_EQ(zero.body["field"], "canary.weight") << zero;
  EXPECT_EQ(try_canary({{"version", v2}, {"weight", 100}}).status, 400);
  Answer same = try_canary({{"version", v1}, {"weight", 10}});
  EXPECT_EQ(same.status, 400) << same;
  EXPECT_EQ(same.body["field"], "canary.version") << same;
  Answer unapproved = try_canary({{"version", v3}, {"weight", 10}});
  EXPECT_EQ(unapproved.status, 409) << unapproved;
  EXPECT_NE(unapproved.body["detail"].get<std::string>().find("pending"), std::string::npos);
  EXPECT_EQ(try_canary({{"version", 99}, {"weight", 10}}).status, 404);
  EXPECT_EQ(try_canary({{"weight", 10}}).status, 400);
  EXPECT_EQ(try_canary({{"version", v2}, {"weight", 10}, {"extra", 1}}).status, 400);
}

TEST_F(ExecutionApiTest, ABatchRunsEachInputInOrderWithItsOwnOutcome) {
  publish("acme", "double", kDoubler, false);
  Answer batch =
      invoke("acme", "double", {{"inputs", {{{"n", 1}}, {{"n", "x"}}, {{"n", 3}}}}}, "?version=1");
  ASSERT_EQ(batch.status, 200) << batch;
  const json& results = batch.body["results"];
  ASSERT_EQ(results.size(), 3u) << batch;
  EXPECT_EQ(results[0]["outcome"], "ok");
  EXPECT_EQ(results[0]["output"]["doubled"], 2);
  EXPECT_EQ(results[0]["status"], 200);
  EXPECT_EQ(results[1]["outcome"], "script_error");
  EXPECT_EQ(results[1]["status"], 422);
  EXPECT_EQ(results[2]["outcome"], "ok");
  EXPECT_EQ(results[2]["output"]["doubled"], 6);
  EXPECT_EQ(batch.body["outcomes"], json({{"ok", 2}, {"script_error", 1}}));
  std::set<std::string> ids;
  for (const auto& result : results) ids.insert(result["invocation_id"].get<std::string>());
  EXPECT_EQ(ids.size(), 3u);

  // Over the policy's batch_inputs (4 for acme), empty, or both input and inputs: refused whole.
  Answer too_many =
      invoke("acme", "double", {{"inputs", json::array({1, 2, 3, 4, 5})}}, "?version=1");
  EXPECT_EQ(too_many.status, 400) << too_many;
  EXPECT_NE(too_many.body["detail"].get<std::string>().find("tenants.acme.limits.batch_inputs"),
            std::string::npos)
      << too_many;
  EXPECT_EQ(invoke("acme", "double", {{"inputs", json::array()}}, "?version=1").status, 400);
  EXPECT_EQ(
      invoke("acme", "double", {{"inputs", {{{"n", 1}}}}, {"input", {{"n", 1}}}}, "?version=1")
          .status,
      400);
}

TEST_F(ExecutionApiTest, EachInputOfABatchPassesAdmissionSoAQuotaRefusesOnlyTheRest) {
  publish("dave", "double", kDoubler, false);
  Answer batch =
      invoke("dave", "double", {{"inputs", {{{"n", 1}}, {{"n", 2}}, {{"n", 3}}}}}, "?version=1");
  ASSERT_EQ(batch.status, 200) << batch;
  const json& results = batch.body["results"];
  ASSERT_EQ(results.size(), 3u);
  EXPECT_EQ(results[0]["outcome"], "ok");
  EXPECT_EQ(results[1]["outcome"], "ok");
  EXPECT_EQ(results[2]["outcome"], "rejected");
  EXPECT_EQ(results[2]["status"], 429);
  EXPECT_EQ(results[2]["quota"], "rate");
  EXPECT_TRUE(results[2].contains("Retry-After")) << results[2];
}

TEST_F(ExecutionApiTest, TheLastRunsAreStoredWithoutInputsByDefault) {
  publish("acme", "double", kDoubler, false);
  for (int n = 1; n <= 3; ++n) invoke("acme", "double", {{"input", {{"n", n}}}}, "?version=1");
  Answer listed = api_->get(tenant("acme")["publisher"], "/v1/tenants/acme/scripts/double/runs");
  ASSERT_EQ(listed.status, 200) << listed;
  const json& runs = listed.body["runs"];
  ASSERT_EQ(runs.size(), 3u) << listed;
  EXPECT_EQ(runs[0]["result"]["output"]["doubled"], 6);  // newest first
  EXPECT_EQ(runs[2]["result"]["output"]["doubled"], 2);
  EXPECT_EQ(runs[0]["outcome"], "ok");
  EXPECT_EQ(runs[0]["input_stored"], false);
  EXPECT_TRUE(runs[0]["input"].is_null());

  Answer one = api_->get(tenant("acme")["auditor"], "/v1/tenants/acme/scripts/double/runs/" +
                                                        runs[1]["id"].get<std::string>());
  ASSERT_EQ(one.status, 200) << one;
  EXPECT_EQ(one.body["result"]["output"]["doubled"], 4);
  // Invokers do not read other runs' results.
  EXPECT_EQ(api_->get(tenant("acme")["invoker"], "/v1/tenants/acme/scripts/double/runs").status,
            403);
  EXPECT_EQ(
      api_->get(tenant("acme")["publisher"], "/v1/tenants/acme/scripts/double/runs/nope").status,
      404);

  Answer replay = api_->post(
      tenant("acme")["publisher"],
      "/v1/tenants/acme/scripts/double/versions/1/replay?run=" + runs[0]["id"].get<std::string>());
  EXPECT_EQ(replay.status, 409) << replay;
  EXPECT_EQ(replay.body["type"], "urn:corral:problem:input-not-stored") << replay;
}

TEST_F(ExecutionApiTest, StoredRunsKeepTheNewestAndReplayAgainstAnotherVersionComparesOutputs) {
  auto& tokens = tenant("carol");
  int64_t v1 = publish("carol", "calc", kDoubler, false);
  int64_t v2 = publish("carol", "calc", kTripler, false);
  for (int n = 1; n <= 5; ++n) invoke("carol", "calc", {{"input", {{"n", n}}}}, "?version=1");
  Answer listed = api_->get(tokens["reviewer"], "/v1/tenants/carol/scripts/calc/runs");
  ASSERT_EQ(listed.status, 200) << listed;
  const json& runs = listed.body["runs"];
  ASSERT_EQ(runs.size(), 3u) << "runs.keep is 3: " << listed;
  EXPECT_EQ(runs[0]["input"], json({{"n", 5}}));
  EXPECT_EQ(runs[2]["input"], json({{"n", 3}}));
  std::string run = runs[0]["id"];

  std::string replay_path = "/v1/tenants/carol/scripts/calc/versions/";
  Answer same =
      api_->post(tokens["reviewer"], replay_path + std::to_string(v1) + "/replay?run=" + run);
  ASSERT_EQ(same.status, 200) << same;
  EXPECT_EQ(same.body["output"]["doubled"], 10);
  EXPECT_EQ(same.body["replay_of"]["run"], run);
  EXPECT_EQ(same.body["replay_of"]["same_output"], true);

  Answer other =
      api_->post(tokens["reviewer"], replay_path + std::to_string(v2) + "/replay?run=" + run);
  ASSERT_EQ(other.status, 200) << other;
  EXPECT_EQ(other.body["version"], v2);
  EXPECT_EQ(other.body["output"]["doubled"], 15);
  EXPECT_EQ(other.body["replay_of"]["version"], v1);
  EXPECT_EQ(other.body["replay_of"]["same_outcome"], true);
  EXPECT_EQ(other.body["replay_of"]["same_output"], false);

  EXPECT_EQ(api_->post(tokens["reviewer"], replay_path + "1/replay").status, 400);
  EXPECT_EQ(api_->post(tokens["invoker"], replay_path + "1/replay?run=" + run).status, 403);
}

}  // namespace
}  // namespace corral::testing
