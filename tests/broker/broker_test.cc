// Capability calls end to end: a script in a fully jailed corral-worker calls ctx.kv, ctx.http,
// ctx.emit and ctx.secrets; the calls cross the channel to the broker, which checks them against
// the policy, performs them against a real store (and a loopback HTTP server the test starts),
// and answers. For each capability: allowed, denied by the policy, not requested in the manifest,
// and over each of its limits; for http, each trick.
#include "broker/broker.h"

#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <string>

#include "broker/loopback_http_server.h"
#include "pool/jail_setup.h"
#include "pool/tenant_pool.h"
#include "store/sqlite_fixture.h"

namespace corral::broker {
namespace {

using corral::testing::LoopbackHttpServer;
using corral::testing::TempDir;
using nlohmann::json;

class BrokerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = store::open_sqlite_store(dir_.path());
    sealer_ = std::make_unique<Sealer>(Sealer::open_or_create(dir_.path()));
    audit_ = std::make_unique<audit::AuditTrail>(*store_);
    broker_ = std::make_unique<Broker>(*store_, *sealer_, *audit_, metrics_);
    tenant_ = store_->create_tenant("acme", store::now_ms());
    static JailSetup jail(JailSetup::accept_any_missing());
    pool_ = std::make_unique<TenantPool>(TenantPool::Options{}, [](const std::string& tenant) {
      return std::make_unique<WorkerProcess>(jail.spec_for(CORRAL_WORKER_PATH, tenant));
    });
    use_policy("tenants:\n  acme:\n    capabilities:\n      kv: {}\n");
  }

  void use_policy(const std::string& yaml) {
    policy_ = std::make_shared<const policy::TenantPolicy>(
        policy::Policy::parse(yaml).for_tenant("acme"));
  }

  // Runs `source` as tenant acme with a manifest asking for `requested`; ctx gets what the
  // policy grants of it, as the API does.
  InvocationResult run(const std::string& source, std::vector<std::string> requested,
                       json input = json::object(), int64_t subrequests = 16,
                       int64_t timeout_ms = 1000) {
    InvocationRequest request;
    request.invocation_id = new_invocation_id();
    request.tenant = tenant_.id;
    request.source = source;
    request.input = std::move(input);
    request.limits = LimitsPolicy{}.defaults;
    request.limits.subrequests = subrequests;
    request.limits.timeout_ms = timeout_ms;
    for (const auto& name : requested) {
      if (policy_->grants(name)) request.capabilities.push_back(name);
    }
    request.capability_handler = broker_->handler_for({.tenant_id = tenant_.id,
                                                       .tenant_name = tenant_.name,
                                                       .script = "orders",
                                                       .invocation_id = request.invocation_id,
                                                       .policy_version = 7,
                                                       .policy = policy_,
                                                       .capabilities = request.capabilities,
                                                       .subrequests = subrequests});
    return pool_->run(request);
  }

  // A call as a (compromised) worker could send it, straight to the broker.
  json raw_call(const json& call, std::vector<std::string> capabilities) {
    auto handler = broker_->handler_for({.tenant_id = tenant_.id,
                                         .tenant_name = tenant_.name,
                                         .script = "orders",
                                         .invocation_id = "raw",
                                         .policy_version = 7,
                                         .policy = policy_,
                                         .capabilities = std::move(capabilities),
                                         .subrequests = 16});
    return json::parse(handler(call.dump(), std::chrono::milliseconds(1000)));
  }

  bool audited_deny(const std::string& action) {
    for (const auto& entry : audit_->query({.action = action})) {
      if (entry.decision == "deny") return true;
    }
    return false;
  }

  TempDir dir_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<Sealer> sealer_;
  std::unique_ptr<audit::AuditTrail> audit_;
  metrics::Registry metrics_;
  std::unique_ptr<Broker> broker_;
  store::Tenant tenant_;
  std::unique_ptr<TenantPool> pool_;
  std::shared_ptr<const policy::TenantPolicy> policy_;
};

std::string dump(const InvocationResult& result) { return to_json(result).dump(); }

// ---- kv

TEST_F(BrokerTest, KvStoresValuesAcrossInvocations) {
  auto put = run(R"(function handle(input, ctx)
      ctx.kv.put("seen:" .. input.id, {amount = input.amount, tags = {"a", "b"}})
      ctx.kv.put("other", 1)
      return ctx.kv.get("missing") == nil
    end)",
                 {"kv"}, {{"id", "o-1"}, {"amount", 12}});
  ASSERT_EQ(put.outcome, Outcome::ok) << dump(put);
  EXPECT_EQ(put.output, true);
  auto get = run(R"(function handle(input, ctx)
      local keys = ctx.kv.list("seen:")
      local value = ctx.kv.get("seen:o-1")
      local removed = ctx.kv.delete("other")
      return {keys = keys, value = value, removed = removed, again = ctx.kv.delete("other")}
    end)",
                 {"kv"});
  ASSERT_EQ(get.outcome, Outcome::ok) << dump(get);
  EXPECT_EQ(get.output["keys"], json::array({"seen:o-1"}));
  EXPECT_EQ(get.output["value"], json({{"amount", 12}, {"tags", {"a", "b"}}}));
  EXPECT_EQ(get.output["removed"], true);
  EXPECT_EQ(get.output["again"], false);
  std::string counted = metrics_.render();
  EXPECT_NE(counted.find("corral_capability_calls_total{op=\"kv.put\",result=\"ok\"} 2"),
            std::string::npos)
      << counted;
}

TEST_F(BrokerTest, KvIsAbsentFromCtxWhenThePolicyDoesNotGrantIt) {
  use_policy("defaults: {}\n");
  auto result = run("function handle(input, ctx) return {kv = ctx.kv == nil} end", {"kv"});
  ASSERT_EQ(result.outcome, Outcome::ok) << dump(result);
  EXPECT_EQ(result.output["kv"], true);
  // A worker that calls anyway (a compromised one) is refused by the broker, naming the rule.
  auto reply = raw_call({{"op", "kv.get"}, {"args", {"k"}}}, {"kv"});
  ASSERT_TRUE(reply.contains("error")) << reply;
  EXPECT_EQ(reply["error"]["kind"], "denied");
  EXPECT_NE(reply["error"]["message"].get<std::string>().find("tenants.acme.capabilities.kv"),
            std::string::npos)
      << reply;
  EXPECT_TRUE(audited_deny("capability.kv.get"));
}

TEST_F(BrokerTest, KvIsAbsentFromCtxWhenTheManifestDoesNotAskForIt) {
  auto result = run("function handle(input, ctx) return {kv = ctx.kv == nil} end", {});
  ASSERT_EQ(result.outcome, Outcome::ok) << dump(result);
  EXPECT_EQ(result.output["kv"], true);
  auto reply = raw_call({{"op", "kv.put"}, {"args", {"k", 1}}}, {});
  EXPECT_EQ(reply["error"]["kind"], "denied") << reply;
  EXPECT_NE(reply["error"]["message"].get<std::string>().find("manifest"), std::string::npos);
}

// The same two refusals hold for every capability, whatever a (compromised) worker sends.
TEST_F(BrokerTest, EveryCapabilityIsDeniedWhenNotGrantedOrNotRequested) {
  const std::vector<std::pair<std::string, json>> calls = {
      {"kv", {{"op", "kv.list"}, {"args", {""}}}},
      {"http", {{"op", "http.fetch"}, {"args", {{{"url", "http://127.0.0.1:9/"}}}}}},
      {"emit", {{"op", "emit"}, {"args", {"orders.created", 1}}}},
      {"secrets", {{"op", "secrets.get"}, {"args", {"api_token"}}}}};
  for (const auto& [capability, call] : calls) {
    use_policy("defaults: {}\n");
    auto not_granted = raw_call(call, {capability});
    EXPECT_EQ(not_granted["error"]["kind"], "denied") << capability << ": " << not_granted;
    EXPECT_NE(not_granted["error"]["message"].get<std::string>().find("tenants.acme.capabilities." +
                                                                      capability),
              std::string::npos)
        << not_granted;
    use_policy("tenants:\n  acme:\n    capabilities:\n      " + capability + ": {}\n");
    auto not_requested = raw_call(call, {});
    EXPECT_EQ(not_requested["error"]["kind"], "denied") << capability << ": " << not_requested;
    EXPECT_NE(not_requested["error"]["message"].get<std::string>().find("manifest"),
              std::string::npos)
        << not_requested;
  }
}

TEST_F(BrokerTest, AllowedCallsAreAuditedWhenThePolicySaysSo) {
  auto allowed_entries = [&] {
    size_t count = 0;
    for (const auto& entry : audit_->query({.action = "capability.kv.get"})) {
      if (entry.decision == "allow") ++count;
    }
    return count;
  };
  ASSERT_EQ(run("function handle(input, ctx) return ctx.kv.get('k') end", {"kv"}).outcome,
            Outcome::ok);
  EXPECT_EQ(allowed_entries(), 0u) << "allowed calls are not audited by default";
  use_policy(
      "defaults:\n  audit:\n    allowed_capability_calls: true\ntenants:\n  acme:\n"
      "    capabilities:\n      kv: {}\n");
  ASSERT_EQ(run("function handle(input, ctx) return ctx.kv.get('k') end", {"kv"}).outcome,
            Outcome::ok);
  EXPECT_EQ(allowed_entries(), 1u);
}

TEST_F(BrokerTest, KvLimitsAreEnforcedAndNamed) {
  use_policy(
      "tenants:\n  acme:\n    capabilities:\n      kv:\n        max_key_bytes: 8\n"
      "        max_value_bytes: 16\n        max_keys: 2\n        max_total_bytes: 30\n");
  auto attempt = [&](const std::string& call) {
    auto result = run("function handle(input, ctx) local ok, e = pcall(function() " + call +
                          " end) return {ok = ok, e = e and tostring(e) or ''} end",
                      {"kv"});
    EXPECT_EQ(result.outcome, Outcome::ok) << dump(result);
    return result.output;
  };
  auto long_key = attempt(R"(ctx.kv.put("a-very-long-key", 1))");
  EXPECT_EQ(long_key["ok"], false);
  EXPECT_NE(long_key["e"].get<std::string>().find("max_key_bytes"), std::string::npos) << long_key;
  auto big_value = attempt(R"(ctx.kv.put("k", string.rep("x", 40)))");
  EXPECT_EQ(big_value["ok"], false);
  EXPECT_NE(big_value["e"].get<std::string>().find("max_value_bytes"), std::string::npos);
  EXPECT_EQ(attempt(R"(ctx.kv.put("k1", "0123456789"))")["ok"], true);
  auto total = attempt(R"(ctx.kv.put("k2", "0123456789abc"))");
  EXPECT_EQ(total["ok"], false);
  EXPECT_NE(total["e"].get<std::string>().find("max_total_bytes"), std::string::npos) << total;
  EXPECT_EQ(attempt(R"(ctx.kv.put("k2", 1))")["ok"], true);
  auto keys = attempt(R"(ctx.kv.put("k3", 1))");
  EXPECT_EQ(keys["ok"], false);
  EXPECT_NE(keys["e"].get<std::string>().find("max_keys"), std::string::npos) << keys;
}

TEST_F(BrokerTest, SubrequestsOverTheLimitStopTheRun) {
  auto result = run(
      "function handle(input, ctx) for i = 1, 10 do pcall(ctx.kv.get, 'k' .. i) end return 1 end",
      {"kv"}, json::object(), 3);
  ASSERT_EQ(result.outcome, Outcome::limit_exceeded) << dump(result);
  EXPECT_EQ(result.limit, LimitKind::subrequests);
  EXPECT_EQ(result.allowed, 3);
}

TEST_F(BrokerTest, TheBrokerCountsCallsItselfWhateverTheWorkerSays) {
  auto handler = broker_->handler_for({.tenant_id = tenant_.id,
                                       .tenant_name = tenant_.name,
                                       .invocation_id = "raw",
                                       .policy = policy_,
                                       .capabilities = {"kv"},
                                       .subrequests = 2});
  std::string call = json({{"op", "kv.get"}, {"args", {"k"}}}).dump();
  EXPECT_TRUE(json::parse(handler(call, std::chrono::milliseconds(100))).contains("ok"));
  EXPECT_TRUE(json::parse(handler(call, std::chrono::milliseconds(100))).contains("ok"));
  auto third = json::parse(handler(call, std::chrono::milliseconds(100)));
  ASSERT_TRUE(third.contains("limit")) << third;
  EXPECT_EQ(third["limit"]["allowed"], 2);
}

TEST_F(BrokerTest, MalformedCallsAreAnsweredWithAnError) {
  for (const std::string call : {"not json", "[]", R"({"op": "fs.open", "args": []})",
                                 R"({"op": "kv.get"})", R"({"op": "kv.get", "args": [42]})"}) {
    auto handler = broker_->handler_for(
        {.tenant_id = tenant_.id, .policy = policy_, .capabilities = {"kv"}, .subrequests = 16});
    auto reply = json::parse(handler(call, std::chrono::milliseconds(100)));
    ASSERT_TRUE(reply.contains("error")) << call << " → " << reply;
    EXPECT_EQ(reply["error"]["kind"], "error") << call;
  }
}

// ---- emit

TEST_F(BrokerTest, EmitAppendsToTheTenantsOutboxForAllowedTopics) {
  use_policy(
      "tenants:\n  acme:\n    capabilities:\n      emit:\n        topics: [\"orders.*\"]\n"
      "        max_payload_bytes: 64\n");
  auto result = run(R"(function handle(input, ctx)
      ctx.emit("orders.created", {id = 1})
      ctx.emit("orders.paid", {id = 1, total = 12.5})
      local ok, e = pcall(ctx.emit, "orders.big", string.rep("x", 100))
      return {big = e}
    end)",
                    {"emit"});
  ASSERT_EQ(result.outcome, Outcome::ok) << dump(result);
  EXPECT_NE(result.output["big"].get<std::string>().find("max_payload_bytes"), std::string::npos);
  auto events = store_->read_events(tenant_.id, 0, 10);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].topic, "orders.created");
  EXPECT_EQ(json::parse(events[1].payload), json({{"id", 1}, {"total", 12.5}}));
  EXPECT_LT(events[0].seq, events[1].seq);
}

// quotas.store_write_bytes_per_minute: kv puts and events together, per tenant; the call past it
// fails in the script naming the quota, nothing of it is written, and reads go on.
TEST_F(BrokerTest, WritesPastTheTenantsStoreWriteQuotaFailAndAreNotWritten) {
  use_policy(
      "tenants:\n  acme:\n    capabilities:\n      kv: {}\n      emit:\n        topics: "
      "[\"orders.*\"]\n    quotas:\n      store_write_bytes_per_minute: 10240\n");
  auto result = run(R"(function handle(input, ctx)
      local payload = string.rep("x", 3000)
      local written, refused = 0, nil
      for i = 1, 4 do
        local ok, e = pcall(ctx.emit, "orders.created", payload)
        if ok then written = written + 1 else refused = e break end
      end
      local put_ok, put_error = pcall(ctx.kv.put, "k", string.rep("y", 3000))
      return {written = written, refused = refused, put_ok = put_ok, put_error = put_error,
              read = ctx.kv.get("k")}
    end)",
                    {"emit", "kv"});
  ASSERT_EQ(result.outcome, Outcome::ok) << dump(result);
  EXPECT_EQ(result.output["written"], 3) << "three events of 3 KB fit in 10 KiB, not a fourth";
  std::string refused = result.output["refused"].get<std::string>();
  EXPECT_NE(refused.find("store_write_bytes_per_minute"), std::string::npos) << refused;
  EXPECT_NE(refused.find("tenants.acme.quotas.store_write_bytes_per_minute"), std::string::npos)
      << refused;
  EXPECT_NE(refused.find("fits again in"), std::string::npos) << refused;
  EXPECT_EQ(result.output["put_ok"], false) << "kv puts count against the same quota";
  EXPECT_TRUE(result.output["read"].is_null()) << "the refused put wrote nothing";
  EXPECT_EQ(store_->read_events(tenant_.id, 0, 10).size(), 3u);
}

TEST_F(BrokerTest, EmitToATopicThePolicyDoesNotAllowIsDenied) {
  use_policy("tenants:\n  acme:\n    capabilities:\n      emit:\n        topics: [\"orders.*\"]\n");
  auto uncaught =
      run("function handle(input, ctx) ctx.emit('billing.charge', {}) return 1 end", {"emit"});
  EXPECT_EQ(uncaught.outcome, Outcome::denied) << dump(uncaught);
  EXPECT_NE(uncaught.message.find("tenants.acme.capabilities.emit.topics"), std::string::npos)
      << uncaught.message;
  auto caught = run(R"(function handle(input, ctx)
      local ok, e = pcall(ctx.emit, 'billing.charge', {})
      return {ok = ok, e = e}
    end)",
                    {"emit"});
  ASSERT_EQ(caught.outcome, Outcome::ok) << dump(caught);
  EXPECT_EQ(caught.output["ok"], false);
  EXPECT_TRUE(store_->read_events(tenant_.id, 0, 10).empty());
  EXPECT_TRUE(audited_deny("capability.emit"));
  // Re-raised with error(e), it is still the denial.
  auto reraised = run(R"(function handle(input, ctx)
      local ok, e = pcall(ctx.emit, 'billing.charge', {})
      error(e)
    end)",
                      {"emit"});
  EXPECT_EQ(reraised.outcome, Outcome::denied) << dump(reraised);
}

// The review's flood: denied calls whose name argument is megabytes long made megabyte audit
// entries and cost the supervisor a parse each. A name past 4,096 bytes is refused in the worker
// (never sent), and a denied name is echoed at most 128 bytes back to the script.
TEST_F(BrokerTest, AHugeNameIsRefusedBeforeItIsSentAndALongOneIsNotEchoed) {
  use_policy("tenants:\n  acme:\n    capabilities:\n      emit:\n        topics: [\"orders.*\"]\n");
  auto huge = run(R"(function handle(input, ctx)
      local ok, e = pcall(ctx.emit, string.rep('t', 1024 * 1024), {})
      return {ok = ok, e = e}
    end)",
                  {"emit"});
  ASSERT_EQ(huge.outcome, Outcome::ok) << dump(huge);
  EXPECT_EQ(huge.output["ok"], false);
  EXPECT_NE(huge.output["e"].get<std::string>().find("byte maximum of a key, topic or secret name"),
            std::string::npos)
      << dump(huge);
  EXPECT_FALSE(audited_deny("capability.emit")) << "the call reached the broker";
  auto long_name = run(R"(function handle(input, ctx)
      local ok, e = pcall(ctx.emit, string.rep('t', 4000), {})
      return {ok = ok, e = e}
    end)",
                       {"emit"});
  ASSERT_EQ(long_name.outcome, Outcome::ok) << dump(long_name);
  EXPECT_LT(long_name.output["e"].get<std::string>().size(), 600u) << dump(long_name);
  EXPECT_TRUE(audited_deny("capability.emit"));
}

// ---- secrets

TEST_F(BrokerTest, SecretsAreReadableAndRedactedFromLogsAndErrors) {
  use_policy(
      "tenants:\n  acme:\n    capabilities:\n      secrets:\n        names: [\"api_token\"]\n");
  broker_->secrets().put(tenant_.id, "api_token", "s3cr3t-value-42", store::now_ms());
  broker_->secrets().put(tenant_.id, "db_password", "hunter2-hunter2", store::now_ms());
  auto result = run(R"(function handle(input, ctx)
      local token = ctx.secrets.get("api_token")
      ctx.log.info("using", token)
      local ok, e = pcall(ctx.secrets.get, "db_password")
      ctx.log.warn(e)
      error("failed with " .. token)
    end)",
                    {"secrets"});
  broker_->redact(tenant_.id, result);
  ASSERT_EQ(result.outcome, Outcome::script_error) << dump(result);
  ASSERT_EQ(result.logs.size(), 2u);
  EXPECT_EQ(result.logs[0].message, "using [redacted:api_token]");
  EXPECT_NE(result.logs[1].message.find("tenants.acme.capabilities.secrets.names"),
            std::string::npos)
      << result.logs[1].message;
  EXPECT_EQ(result.message.find("s3cr3t"), std::string::npos) << result.message;
  EXPECT_NE(result.message.find("[redacted:api_token]"), std::string::npos) << result.message;
  EXPECT_TRUE(audited_deny("capability.secrets.get"));
}

// ---- http

class BrokerHttpTest : public BrokerTest {
 protected:
  void allow(const std::string& extra = "      allow_private: [\"127.0.0.1\"]\n") {
    use_policy("tenants:\n  acme:\n    capabilities:\n      http:\n        allow: [\"" +
               server_.origin() + "\"]\n        max_response_bytes: 4096\n" +
               "        timeout_ms: 500\n" + (extra.empty() ? "" : "  " + extra));
  }
  InvocationResult fetch(const std::string& spec) {
    return run("function handle(input, ctx) local ok, r = pcall(ctx.http.fetch, " + spec +
                   ") if ok then return {status = r.status, body = r.body} end "
                   "return {error = r} end",
               {"http"});
  }
  LoopbackHttpServer server_;
  LoopbackHttpServer other_;
};

TEST_F(BrokerHttpTest, AnAllowedFetchReturnsTheResponseWithoutCredentialHeaders) {
  allow();
  auto result = fetch("{url = '" + server_.url("/echo") +
                      "', method = 'POST', body = 'hello', headers = {Authorization = 'Bearer x', "
                      "['X-Order'] = '7'}}");
  ASSERT_EQ(result.outcome, Outcome::ok) << dump(result);
  ASSERT_EQ(result.output["status"], 200) << result.output;
  auto echoed = json::parse(result.output["body"].get<std::string>());
  EXPECT_EQ(echoed["method"], "POST");
  EXPECT_EQ(echoed["body"], "hello");
  std::string headers = echoed["headers"].dump();
  EXPECT_EQ(headers.find("Bearer x"), std::string::npos) << headers;
  EXPECT_NE(headers.find("X-Order"), std::string::npos) << headers;
}

TEST_F(BrokerHttpTest, LoopbackIsDeniedUnlessThePolicyNamesIt) {
  allow("");
  auto result = run(
      "function handle(input, ctx) return ctx.http.fetch{url = '" + server_.url("/echo") + "'} end",
      {"http"});
  EXPECT_EQ(result.outcome, Outcome::denied) << dump(result);
  EXPECT_NE(result.message.find("allow_private"), std::string::npos) << result.message;
  EXPECT_TRUE(audited_deny("capability.http.fetch"));
}

TEST_F(BrokerHttpTest, ANameResolvingToAPrivateAddressIsDenied) {
  use_policy(
      "tenants:\n  acme:\n    capabilities:\n      http:\n        allow: [\"http://localhost:" +
      std::to_string(server_.port()) + "\"]\n");
  auto result = fetch("{url = 'http://localhost:" + std::to_string(server_.port()) + "/echo'}");
  ASSERT_EQ(result.outcome, Outcome::ok) << dump(result);
  EXPECT_NE(result.output["error"].get<std::string>().find("127.0.0.1"), std::string::npos)
      << result.output;
}

TEST_F(BrokerHttpTest, ARedirectToAForbiddenHostIsDeniedAtThatHop) {
  allow();
  auto result = fetch("{url = '" + server_.url("/redirect?to=" + other_.url("/echo")) + "'}");
  ASSERT_EQ(result.outcome, Outcome::ok) << dump(result);
  EXPECT_NE(result.output["error"].get<std::string>().find("denied"), std::string::npos)
      << result.output;
  EXPECT_EQ(other_.requests(), 0) << "the forbidden server was reached";
}

TEST_F(BrokerHttpTest, AHugeResponseIsCutOff) {
  allow();
  auto result = fetch("{url = '" + server_.url("/huge?bytes=1000000") + "'}");
  ASSERT_EQ(result.outcome, Outcome::ok) << dump(result);
  EXPECT_TRUE(result.output.contains("error")) << result.output;
}

TEST_F(BrokerHttpTest, ASlowResponseTimesOutWithinThePolicysTimeout) {
  allow();
  auto started = std::chrono::steady_clock::now();
  auto result = fetch("{url = '" + server_.url("/slow?ms=3000") + "'}");
  auto took = std::chrono::steady_clock::now() - started;
  ASSERT_EQ(result.outcome, Outcome::ok) << dump(result);
  EXPECT_TRUE(result.output.contains("error")) << result.output;
  EXPECT_LT(took, std::chrono::milliseconds(2500));
}

TEST_F(BrokerHttpTest, TheRunsWallClockKeepsRunningDuringAFetch) {
  use_policy("tenants:\n  acme:\n    capabilities:\n      http:\n        allow: [\"" +
             server_.origin() +
             "\"]\n        allow_private: [\"127.0.0.1\"]\n        timeout_ms: 10000\n");
  auto started = std::chrono::steady_clock::now();
  auto result = run("function handle(input, ctx) pcall(ctx.http.fetch, {url = '" +
                        server_.url("/slow?ms=5000") + "'}) while true do end end",
                    {"http"}, json::object(), 16, 300);
  auto took = std::chrono::steady_clock::now() - started;
  ASSERT_EQ(result.outcome, Outcome::limit_exceeded) << dump(result);
  EXPECT_EQ(result.limit, LimitKind::wall_time);
  // A fetch that outlived the run's 300 ms would take the server's 5 s; the bound leaves room
  // for starting the jailed worker (part of `took`) on a loaded machine.
  EXPECT_LT(took, std::chrono::milliseconds(4000)) << "the fetch outlived the run's deadline";
}

TEST_F(BrokerHttpTest, HeaderInjectionIsRefused) {
  allow();
  auto result = fetch("{url = '" + server_.url("/echo") +
                      "', headers = {['X-A'] = 'ok\\r\\nX-Injected: 1'}}");
  ASSERT_EQ(result.outcome, Outcome::ok) << dump(result);
  EXPECT_TRUE(result.output.contains("error")) << result.output;
  EXPECT_EQ(server_.requests(), 0) << "the request was sent";
}

// ---- secret references (ctx.secrets.ref, secrets.bind, secrets.reference_only)

// Two loopback servers, both in the http allow list; the secret "stripe" is bound to server_
// only, so other_ stands for any origin the script may fetch but the secret must not reach.
class SecretReferenceTest : public BrokerHttpTest {
 protected:
  static constexpr const char* kValue = "sk_live_9f8e7d6c5b4a";

  void SetUp() override {
    BrokerHttpTest::SetUp();
    broker_->secrets().put(tenant_.id, "stripe", kValue, store::now_ms());
    bind("reference_only: [stripe]");
  }

  void bind(const std::string& secrets_extra) {
    use_policy("tenants:\n  acme:\n    capabilities:\n      http:\n        allow: [\"" +
               server_.origin() + "\", \"" + other_.origin() +
               "\"]\n        allow_private: [\"127.0.0.1\"]\n        timeout_ms: 2000\n"
               "      secrets:\n        names: [stripe, hook]\n        bind: {stripe: [\"" +
               server_.origin() + "\"]}\n        " + secrets_extra + "\n");
  }

  // Runs a fetch of `spec` (Lua, may use `ref`, the reference to "stripe") and returns what the
  // script saw: {status, body, headers} or {error}.
  InvocationResult fetch_with_ref(const std::string& spec) {
    return run(
        "function handle(input, ctx) local ref = ctx.secrets.ref('stripe') "
        "local ok, r = pcall(ctx.http.fetch, " +
            spec +
            ") if ok then return {status = r.status, body = r.body, headers = r.headers, "
            "url = r.url} end return {error = r} end",
        {"http", "secrets"});
  }
};

TEST_F(SecretReferenceTest, AReferenceOnlySecretCannotBeReadByGet) {
  auto result = run(R"(function handle(input, ctx)
      local ok, e = pcall(ctx.secrets.get, "stripe")
      return {ok = ok, e = e}
    end)",
                    {"secrets"});
  ASSERT_EQ(result.outcome, Outcome::ok) << dump(result);
  EXPECT_EQ(result.output["ok"], false) << result.output;
  std::string error = result.output["e"].get<std::string>();
  EXPECT_NE(error.find("reference-only"), std::string::npos) << error;
  EXPECT_NE(error.find("tenants.acme.capabilities.secrets.reference_only"), std::string::npos)
      << error;
  EXPECT_EQ(dump(result).find(kValue), std::string::npos) << dump(result);
  EXPECT_TRUE(audited_deny("capability.secrets.get"));
  // A compromised worker asking the broker directly gets no more.
  json raw = raw_call({{"op", "secrets.get"}, {"args", {"stripe"}}}, {"secrets"});
  EXPECT_EQ(raw["error"]["kind"], "denied") << raw;
  EXPECT_EQ(raw.dump().find(kValue), std::string::npos) << raw;
}

TEST_F(SecretReferenceTest, AReferenceIsReplacedInHeadersAndBodyForABoundOrigin) {
  auto result = fetch_with_ref("{url = '" + server_.url("/echo") +
                               "', method = 'POST', body = 'key=' .. ref .. '&n=1', headers = "
                               "{Authorization = 'Bearer ' .. ref, ['X-Api-Key'] = ref}}");
  ASSERT_EQ(result.outcome, Outcome::ok) << dump(result);
  ASSERT_EQ(result.output["status"], 200) << result.output;
  EXPECT_TRUE(server_.received(std::string("Authorization: Bearer ") + kValue));
  EXPECT_TRUE(server_.received(std::string("X-Api-Key: ") + kValue));
  EXPECT_TRUE(server_.received(std::string("key=") + kValue + "&n=1"));
  EXPECT_FALSE(server_.received("corral-secret")) << "a reference was sent as written";
  // The echo came back, with the value hidden from the script that could not read it.
  std::string body = result.output["body"].get<std::string>();
  EXPECT_EQ(body.find(kValue), std::string::npos) << body;
  EXPECT_NE(body.find("[redacted:stripe]"), std::string::npos) << body;
  EXPECT_EQ(dump(result).find(kValue), std::string::npos) << dump(result);
}

TEST_F(SecretReferenceTest, AnEchoingServerHandsBackNoValueInHeadersOrBody) {
  auto result = fetch_with_ref("{url = '" + server_.url("/reflect") +
                               "', method = 'POST', body = ref, headers = {['X-Key'] = "
                               "'k:' .. ref}}");
  ASSERT_EQ(result.outcome, Outcome::ok) << dump(result);
  ASSERT_EQ(result.output["status"], 200) << result.output;
  ASSERT_TRUE(server_.received(kValue));
  EXPECT_EQ(result.output["body"], "[redacted:stripe]") << result.output;
  EXPECT_EQ(result.output["headers"]["reflected-x-key"], "k:[redacted:stripe]") << result.output;
  EXPECT_EQ(dump(result).find(kValue), std::string::npos) << dump(result);
}

TEST_F(SecretReferenceTest, AReferenceToAnUnboundOriginIsDeniedAndNothingIsSent) {
  auto result = fetch_with_ref("{url = '" + other_.url("/echo") +
                               "', method = 'POST', body = ref, headers = {['X-Key'] = ref}}");
  ASSERT_EQ(result.outcome, Outcome::ok) << dump(result);
  ASSERT_TRUE(result.output.contains("error")) << result.output;
  std::string error = result.output["error"].get<std::string>();
  EXPECT_NE(error.find("denied"), std::string::npos) << error;
  EXPECT_NE(error.find("\"stripe\""), std::string::npos) << error;
  EXPECT_NE(error.find(other_.origin()), std::string::npos) << error;
  EXPECT_NE(error.find("tenants.acme.capabilities.secrets.bind.stripe"), std::string::npos)
      << error;
  EXPECT_EQ(other_.requests(), 0) << "the unbound server was reached";
  EXPECT_TRUE(audited_deny("capability.http.fetch"));
}

TEST_F(SecretReferenceTest, ARedirectToAnUnboundOriginDoesNotCarryTheValue) {
  for (int status : {302, 307, 308, 303}) {
    auto result = fetch_with_ref(
        "{url = '" +
        server_.url("/redirect?status=" + std::to_string(status) + "&to=" + other_.url("/echo")) +
        "', method = 'POST', body = ref, headers = {Authorization = "
        "'Bearer ' .. ref, ['X-Key'] = ref}}");
    ASSERT_EQ(result.outcome, Outcome::ok) << dump(result);
    ASSERT_TRUE(result.output.contains("error")) << status << " " << result.output;
    std::string error = result.output["error"].get<std::string>();
    EXPECT_NE(error.find("secrets.bind.stripe"), std::string::npos) << error;
    EXPECT_TRUE(server_.received(kValue)) << "the bound server should have had the value";
    EXPECT_EQ(other_.requests(), 0) << status << ": the redirect reached the unbound server";
    EXPECT_FALSE(other_.received(kValue));
  }
  // A redirect within the bound origin is followed, and carries the value.
  auto same = fetch_with_ref("{url = '" + server_.url("/redirect?status=307&to=/echo") +
                             "', method = 'POST', body = ref}");
  ASSERT_EQ(same.outcome, Outcome::ok) << dump(same);
  EXPECT_EQ(same.output["status"], 200) << same.output;
}

TEST_F(SecretReferenceTest, ReferencesAreNotReplacedOutsideAFetch) {
  bind("");
  auto result = run(R"(function handle(input, ctx)
      local ref = ctx.secrets.ref("stripe")
      ctx.log.info("ref is " .. ref)
      return {ref = ref}
    end)",
                    {"secrets"});
  broker_->redact(tenant_.id, result);
  ASSERT_EQ(result.outcome, Outcome::ok) << dump(result);
  EXPECT_EQ(result.output["ref"], "{{corral-secret:stripe}}");
  ASSERT_EQ(result.logs.size(), 1u);
  EXPECT_EQ(result.logs[0].message, "ref is {{corral-secret:stripe}}");
}

TEST_F(SecretReferenceTest, AReferenceTheGrantDoesNotAllowIsDenied) {
  broker_->secrets().put(tenant_.id, "hook", "whsec_abcdef123456", store::now_ms());
  broker_->secrets().put(tenant_.id, "other", "other-value-123456", store::now_ms());
  // hook is granted but bound to no origin; other is not granted at all; a forged reference
  // gets what ref() would have.
  for (std::string name : {"hook", "other"}) {
    auto result = fetch_with_ref("{url = '" + server_.url("/echo") +
                                 "', method = 'POST', body = '{{corral-secret:" + name + "}}'}");
    ASSERT_EQ(result.outcome, Outcome::ok) << dump(result);
    std::string error = result.output.value("error", "");
    EXPECT_NE(error.find("denied"), std::string::npos) << name << ": " << result.output;
    EXPECT_NE(error.find(name == "hook" ? "secrets.bind" : "secrets.names"), std::string::npos)
        << error;
  }
  EXPECT_EQ(server_.requests(), 0);
  // Nor may a request carry a reference without the secrets capability in its manifest.
  auto unrequested =
      run("function handle(input, ctx) local ok, e = pcall(ctx.http.fetch, {url = '" +
              server_.url("/echo") +
              "', method = 'POST', body = '{{corral-secret:stripe}}'}) return e end",
          {"http"});
  ASSERT_EQ(unrequested.outcome, Outcome::ok) << dump(unrequested);
  EXPECT_NE(unrequested.output.get<std::string>().find("manifest.capabilities"), std::string::npos)
      << unrequested.output;
  // And a URL never carries one.
  auto in_url = fetch_with_ref("{url = '" + server_.url("/echo?k=") + "' .. ref}");
  ASSERT_EQ(in_url.outcome, Outcome::ok) << dump(in_url);
  EXPECT_NE(in_url.output.value("error", "").find("URL"), std::string::npos) << in_url.output;
  EXPECT_EQ(server_.requests(), 0);
}

// The fetcher's confinement alone, without the broker: a request confined to one origin is
// refused at a redirect to another before anything reaches it.
TEST(HopConfinement, AConfinedRequestIsNotSentToAnotherOriginOnAnyHop) {
  LoopbackHttpServer bound, other;
  HttpRules rules;
  rules.allow = {bound.origin(), other.origin()};
  rules.allow_private = {"127.0.0.1"};
  std::string error;
  FetchRequest request;
  request.url = bound.url("/redirect?status=307&to=" + other.url("/echo"));
  request.method = "POST";
  request.body = "the-value";
  request.headers = {{"Authorization", "Bearer the-value"}};
  request.credential_headers = {0};
  request.confined_to.push_back(
      {"s", {*net::OriginPattern::parse(bound.origin(), &error)}, "bind.s"});
  FetchResult result = HttpFetcher().fetch(rules, request);
  EXPECT_EQ(result.kind, FetchResult::Kind::denied) << result.message;
  EXPECT_EQ(result.rule, "bind.s");
  EXPECT_TRUE(bound.received("Authorization: Bearer the-value"));
  EXPECT_EQ(other.requests(), 0);

  request.url = other.url("/echo");
  result = HttpFetcher().fetch(rules, request);
  EXPECT_EQ(result.kind, FetchResult::Kind::denied) << result.message;
  EXPECT_EQ(other.requests(), 0);

  // Unconfined, the credential header is stripped as ever.
  request.confined_to.clear();
  request.url = bound.url("/echo");
  LoopbackHttpServer fresh;
  request.url = fresh.url("/echo");
  rules.allow.push_back(fresh.origin());
  result = HttpFetcher().fetch(rules, request);
  EXPECT_EQ(result.kind, FetchResult::Kind::ok) << result.message;
  EXPECT_FALSE(fresh.received("Authorization"));
}

}  // namespace
}  // namespace corral::broker
