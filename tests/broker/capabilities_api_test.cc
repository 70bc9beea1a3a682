// Capabilities through a real corrald: the policy decides what ctx holds and what each call may
// do, results name the policy version they ran under, and changing the policy under load never
// leaves an invocation running under half of one version and half of another.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "broker/loopback_http_server.h"
#include "registry/api_client.h"

namespace corral::testing {
namespace {

using nlohmann::json;

// v1 and v2 differ in a limit (subrequests) and in a capability rule (emit topics), so a run
// that saw one of v1 and one of v2 would show it. The quotas are lifted: four callers in a loop
// would otherwise be refused with 429 (tests/sched covers quotas); so is the circuit breaker,
// which the run limit_exceeded under v2 would otherwise open (503).
std::string policy_document(int64_t subrequests, const std::string& topic) {
  return "tenants:\n  acme:\n    quotas:\n      rate_per_second: 100000\n      burst: 100000\n"
         "      concurrency: 100\n"
         "    circuit_breaker:\n      failures: 1000\n"
         "    limits:\n      subrequests: " +
         std::to_string(subrequests) +
         "\n    capabilities:\n      kv: {}\n      emit:\n        topics: [\"" + topic +
         ".*\"]\n      secrets: {}\n";
}

// Emits to both topics (one is refused, caught), then makes kv calls until the limit stops it.
constexpr const char* kProbe = R"(function handle(input, ctx)
  local a = pcall(ctx.emit, "alpha.x", {})
  local b = pcall(ctx.emit, "beta.x", {})
  ctx.log.info(a and "alpha" or "beta")
  for i = 1, 4 do ctx.kv.get("k") end
  return {alpha = a, beta = b}
end)";

class CapabilitiesApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    api_ = std::make_unique<ApiClient>(corrald_);
    put_policy(policy_document(7, "alpha"));
    tokens_ = api_->tenant_with_tokens("acme");
  }

  Answer put_policy(const std::string& document) {
    Answer answer = api_->put(api_->admin(), "/v1/policy", {{"document", document}});
    EXPECT_EQ(answer.status, 201) << answer;
    return answer;
  }

  int64_t publish_live(const std::string& script, const std::string& source,
                       const json& capabilities) {
    Answer published =
        api_->post(tokens_["publisher"], "/v1/tenants/acme/scripts/" + script + "/versions",
                   {{"source", source}, {"manifest", manifest(capabilities)}});
    EXPECT_EQ(published.status, 201) << published;
    int64_t version = published.body.value("version", int64_t{0});
    api_->approve(tokens_["reviewer"], "acme", script, version);
    api_->set_alias(tokens_["reviewer"], "acme", script, "live", version);
    return version;
  }

  CorraldProcess corrald_;
  std::unique_ptr<ApiClient> api_;
  std::map<std::string, std::string> tokens_;
};

TEST_F(CapabilitiesApiTest, APolicyChangeUnderLoadNeverHalfApplies) {
  publish_live("probe", kProbe, {"kv", "emit"});
  std::atomic<bool> stop{false};
  std::atomic<int> under_v1{0}, under_v2{0}, inconsistent{0};
  int64_t v1 = api_->get(api_->admin(), "/v1/policy").body["version"];
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&] {
      ApiClient client(corrald_);
      while (!stop) {
        Answer answer = client.post(tokens_["invoker"], "/v1/tenants/acme/scripts/probe/invoke",
                                    {{"input", {}}});
        if (!answer.body.contains("policy_version")) {
          ADD_FAILURE() << "no policy_version: " << answer;
          ++inconsistent;
          continue;
        }
        bool first = answer.body["policy_version"] == v1;
        // Under v1: alpha allowed, 4 kv calls within 7. Under v2: beta allowed, the third kv
        // call is over the limit of 4 (2 emits + 2 kv).
        bool consistent = first ? answer.status == 200 && answer.body["output"]["alpha"] == true &&
                                      answer.body["output"]["beta"] == false
                                : answer.status == 422 &&
                                      answer.body["error"]["limit"] == "subrequests" &&
                                      answer.body["error"]["allowed"] == 4 &&
                                      answer.body["logs"][0]["message"] == "beta";
        if (!consistent) {
          ++inconsistent;
          ADD_FAILURE() << answer;
        }
        ++(first ? under_v1 : under_v2);
      }
    });
  }
  while (under_v1 < 20) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  Answer second = put_policy(policy_document(4, "beta"));
  int64_t v2 = second.body["version"];
  EXPECT_EQ(v2, v1 + 1);
  auto switched = under_v2.load();
  while (under_v2 < switched + 20) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  stop = true;
  for (auto& caller : callers) caller.join();
  EXPECT_EQ(inconsistent, 0);
  EXPECT_GT(under_v1, 0);
  EXPECT_GT(under_v2, 0);
}

TEST_F(CapabilitiesApiTest, SecretsReachTheScriptButNeverItsLogsOrErrors) {
  Answer set = api_->put(api_->admin(), "/v1/tenants/acme/secrets/api_token",
                         {{"value", "tok-5f2a-very-secret"}});
  ASSERT_TRUE(set.status == 201 || set.status == 204) << set;
  publish_live("leaky",
               "function handle(input, ctx) local t = ctx.secrets.get('api_token') "
               "ctx.log.info('token is ' .. t) "
               "if input.fail then error('cannot use ' .. t) end return {length = #t} end",
               {"secrets"});
  Answer ok = api_->post(tokens_["invoker"], "/v1/tenants/acme/scripts/leaky/invoke",
                         {{"input", json::object()}});
  ASSERT_EQ(ok.status, 200) << ok;
  EXPECT_EQ(ok.body["output"]["length"], 20);
  EXPECT_EQ(ok.body["logs"][0]["message"], "token is [redacted:api_token]") << ok;
  Answer failed = api_->post(tokens_["invoker"], "/v1/tenants/acme/scripts/leaky/invoke",
                             {{"input", {{"fail", true}}}});
  EXPECT_EQ(failed.status, 422) << failed;
  EXPECT_EQ(failed.raw.find("tok-5f2a"), std::string::npos) << failed;
  EXPECT_NE(failed.raw.find("[redacted:api_token]"), std::string::npos) << failed;
}

// log.max_entry_bytes cuts each message of a result, after redaction: a cut that fell inside a
// secret would otherwise show the secret's first bytes.
TEST_F(CapabilitiesApiTest, LogMessagesAreCutToThePolicysEntrySizeAfterRedaction) {
  put_policy(policy_document(7, "alpha") + "      log: {max_entry_bytes: 20}\n");
  Answer set = api_->put(api_->admin(), "/v1/tenants/acme/secrets/api_token",
                         {{"value", "tok-5f2a-very-secret"}});
  ASSERT_TRUE(set.status == 201 || set.status == 204) << set;
  publish_live(
      "chatty",
      "function handle(input, ctx) ctx.log.info('token is ' .. ctx.secrets.get('api_token')) "
      "print('short') print(string.rep('x', 100)) return 1 end",
      {"secrets"});
  Answer ran = api_->post(tokens_["invoker"], "/v1/tenants/acme/scripts/chatty/invoke",
                          {{"input", json::object()}});
  ASSERT_EQ(ran.status, 200) << ran;
  ASSERT_EQ(ran.body["logs"].size(), 3u) << ran;
  // "token is [redacted:api_token]" cut to 20 bytes; cut first, it would read "token is
  // tok-5f2a-ve".
  EXPECT_EQ(ran.body["logs"][0]["message"], "token is [redacted:a\u2026") << ran;
  EXPECT_EQ(ran.raw.find("tok-5f2a"), std::string::npos) << ran;
  EXPECT_EQ(ran.body["logs"][1]["message"], "short");
  EXPECT_EQ(ran.body["logs"][2]["message"], std::string(20, 'x') + "\u2026");

  // The playground run of the tenant's publisher is cut by the same policy.
  Answer played =
      api_->post(tokens_["publisher"], "/v1/run",
                 {{"source", "function handle() print(string.rep('y', 50)) return 1 end"},
                  {"input", json::object()}});
  ASSERT_EQ(played.status, 200) << played;
  EXPECT_EQ(played.body["logs"][0]["message"], std::string(20, 'y') + "\u2026") << played;
}

TEST_F(CapabilitiesApiTest, EmittedEventsAreReadInOrderWithACursor) {
  publish_live("emitter",
               "function handle(input, ctx) for i = 1, 3 do ctx.emit('alpha.n', {i = i}) end "
               "return true end",
               {"emit"});
  Answer ran = api_->post(tokens_["invoker"], "/v1/tenants/acme/scripts/emitter/invoke",
                          {{"input", json::object()}});
  ASSERT_EQ(ran.status, 200) << ran;
  Answer first = api_->get(api_->admin(), "/v1/tenants/acme/events?limit=2");
  ASSERT_EQ(first.status, 200) << first;
  ASSERT_EQ(first.body["events"].size(), 2u) << first;
  EXPECT_EQ(first.body["events"][0]["payload"]["i"], 1);
  EXPECT_EQ(first.body["events"][1]["payload"]["i"], 2);
  Answer rest =
      api_->get(api_->admin(), "/v1/tenants/acme/events?after=" + first.body["next_after"].dump());
  ASSERT_EQ(rest.status, 200) << rest;
  ASSERT_EQ(rest.body["events"].size(), 1u) << rest;
  EXPECT_EQ(rest.body["events"][0]["payload"]["i"], 3);
  EXPECT_EQ(rest.body["events"][0]["topic"], "alpha.n");
}

TEST_F(CapabilitiesApiTest, ACapabilityTheCurrentPolicyNoLongerGrantsIsGoneFromCtx) {
  publish_live("kv-user", "function handle(input, ctx) return {kv = ctx.kv ~= nil} end", {"kv"});
  auto invoke = [&] {
    return api_->post(tokens_["invoker"], "/v1/tenants/acme/scripts/kv-user/invoke",
                      {{"input", json::object()}});
  };
  Answer before = invoke();
  ASSERT_EQ(before.status, 200) << before;
  EXPECT_EQ(before.body["output"]["kv"], true);
  put_policy("tenants:\n  acme:\n    capabilities:\n      emit:\n        topics: [\"alpha.*\"]\n");
  Answer after = invoke();
  ASSERT_EQ(after.status, 200) << after;
  EXPECT_EQ(after.body["output"]["kv"], false);
  EXPECT_EQ(after.body["policy_version"], before.body["policy_version"].get<int64_t>() + 1);
}

// A reference-only secret through a real corrald: the script cannot read it, the bound server
// gets it in the request, an unbound one gets nothing, and the echo, the logs, the result and the
// audit trail never show it.
TEST_F(CapabilitiesApiTest, AReferenceOnlySecretReachesOnlyItsBoundOriginAndNeverTheScript) {
  LoopbackHttpServer bound, unbound;
  const std::string value = "sk_live_e2e_4d3c2b1a";
  std::string document = policy_document(7, "alpha");
  document.erase(document.rfind("      secrets: {}\n"));  // replaced by the grant below
  put_policy(document + "      http:\n        allow: [\"" + bound.origin() + "\", \"" +
             unbound.origin() + "\"]\n        allow_private: [\"127.0.0.1\"]\n" +
             "      secrets:\n        bind: {stripe: [\"" + bound.origin() +
             "\"]}\n        reference_only: [stripe]\n");
  Answer set = api_->put(api_->admin(), "/v1/tenants/acme/secrets/stripe", {{"value", value}});
  ASSERT_TRUE(set.status == 201 || set.status == 204) << set;
  publish_live("payer",
               "function handle(input, ctx)\n"
               "  local got, e = pcall(ctx.secrets.get, 'stripe')\n"
               "  ctx.log.info(tostring(e))\n"
               "  local ref = ctx.secrets.ref('stripe')\n"
               "  local r = ctx.http.fetch{url = input.bound, method = 'POST', body = ref,\n"
               "    headers = {Authorization = 'Bearer ' .. ref, ['X-Key'] = ref}}\n"
               "  local ok, denied = pcall(ctx.http.fetch, {url = input.unbound, method = 'POST',\n"
               "    body = ref})\n"
               "  return {got = got, body = r.body, reflected = r.headers['reflected-x-key'],\n"
               "    denied = denied}\n"
               "end",
               {"http", "secrets"});
  Answer ran = api_->post(
      tokens_["invoker"], "/v1/tenants/acme/scripts/payer/invoke",
      {{"input", {{"bound", bound.url("/reflect")}, {"unbound", unbound.url("/echo")}}}});
  ASSERT_EQ(ran.status, 200) << ran;
  EXPECT_EQ(ran.body["output"]["got"], false) << ran;
  EXPECT_NE(ran.body["logs"][0]["message"].get<std::string>().find("reference_only"),
            std::string::npos)
      << ran;
  EXPECT_TRUE(bound.received("Authorization: Bearer " + value));
  EXPECT_TRUE(bound.received("X-Key: " + value));
  EXPECT_EQ(ran.body["output"]["body"], "[redacted:stripe]") << ran;
  EXPECT_EQ(ran.body["output"]["reflected"], "[redacted:stripe]") << ran;
  EXPECT_NE(ran.body["output"]["denied"].get<std::string>().find("secrets.bind.stripe"),
            std::string::npos)
      << ran;
  EXPECT_EQ(unbound.requests(), 0);
  EXPECT_EQ(ran.raw.find(value), std::string::npos) << ran;
  Answer audit = api_->get(api_->admin(), "/v1/audit?tenant=acme");
  ASSERT_EQ(audit.status, 200) << audit;
  EXPECT_NE(audit.raw.find("capability.secrets.get"), std::string::npos) << audit;
  EXPECT_EQ(audit.raw.find(value), std::string::npos) << audit;
}

}  // namespace
}  // namespace corral::testing
