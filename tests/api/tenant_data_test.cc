// A tenant's data on request (issue 26, "Customer data") through a real corrald: the admin's
// export holds everything kept for the tenant (runs, jobs, kv, events, versions, aliases, tokens,
// secrets' names, audit) but no secret and nothing of another tenant; erasing deletes the
// customers' data (stored runs, jobs, kv, events, cached results), keeps the tenant working, and
// both are audited.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "registry/api_client.h"

namespace corral::testing {
namespace {

using nlohmann::json;

constexpr const char* kPolicy = R"(tenants:
  acme:
    quotas: {rate_per_second: 100000, burst: 100000, concurrency: 100}
    runs: {keep: 20, inputs: true}
    capabilities:
      kv: {}
      emit: {topics: ["orders.*"]}
  globex:
    runs: {keep: 20, inputs: true}
)";

constexpr const char* kRecorder = R"(function handle(input, ctx)
  ctx.kv.put("last-customer", input.email)
  ctx.emit("orders.seen", {email = input.email})
  return {seen = input.email}
end)";

constexpr const char* kEcho = "function handle(input) return {echo = input.email} end";

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

class TenantDataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    api_ = std::make_unique<ApiClient>(corrald_);
    ASSERT_EQ(api_->put(api_->admin(), "/v1/policy", {{"document", kPolicy}}).status, 201);
    acme_ = api_->tenant_with_tokens("acme");
    globex_ = api_->tenant_with_tokens("globex");
  }

  void publish_live(std::map<std::string, std::string>& tokens, const std::string& tenant,
                    const std::string& script, const std::string& source, json capabilities,
                    bool deterministic = false) {
    json body = {{"source", source}, {"manifest", manifest(capabilities)}};
    body["manifest"]["deterministic"] = deterministic;
    Answer published = api_->post(
        tokens["publisher"], "/v1/tenants/" + tenant + "/scripts/" + script + "/versions", body);
    ASSERT_EQ(published.status, 201) << published;
    api_->approve(tokens["reviewer"], tenant, script, 1);
    api_->set_alias(tokens["reviewer"], tenant, script, "live", 1);
  }

  Answer invoke(std::map<std::string, std::string>& tokens, const std::string& tenant,
                const std::string& script, const std::string& email) {
    return api_->post(tokens["invoker"], "/v1/tenants/" + tenant + "/scripts/" + script + "/invoke",
                      {{"input", {{"email", email}}}});
  }

  // Stored runs are written a moment after the run (runs::kFlushInterval).
  void wait_for_stored_runs(const std::string& script, size_t count) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      Answer runs = api_->get(acme_["auditor"], "/v1/tenants/acme/scripts/" + script + "/runs");
      if (runs.body["runs"].size() >= count) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "no stored run of " << script;
  }

  json audit(const std::string& action) {
    Answer entries = api_->get(api_->admin(), "/v1/audit?tenant=acme&action=" + action);
    EXPECT_EQ(entries.status, 200) << entries;
    return entries.body["entries"];
  }

  CorraldProcess corrald_;
  std::unique_ptr<ApiClient> api_;
  std::map<std::string, std::string> acme_, globex_;
};

TEST_F(TenantDataTest, TheExportHoldsEverythingKeptForTheTenantButNoSecretAndNoOtherTenant) {
  publish_live(acme_, "acme", "recorder", kRecorder, {"kv", "emit"});
  publish_live(globex_, "globex", "echo", kEcho, json::array());
  ASSERT_EQ(api_->put(api_->admin(), "/v1/tenants/acme/secrets/api_key",
                      {{"value", "s3cr3t-value-of-acme"}})
                .status,
            201);
  ASSERT_EQ(invoke(acme_, "acme", "recorder", "ada@example.com").status, 200);
  ASSERT_EQ(invoke(globex_, "globex", "echo", "eve@globex.example").status, 200);
  wait_for_stored_runs("recorder", 1);

  Answer refused = api_->get(acme_["publisher"], "/v1/tenants/acme/export");
  EXPECT_EQ(refused.status, 403) << refused;

  Answer exported = api_->get(api_->admin(), "/v1/tenants/acme/export");
  ASSERT_EQ(exported.status, 200) << exported;
  const json& body = exported.body;
  EXPECT_EQ(body["tenant"]["name"], "acme");
  EXPECT_TRUE(body["exported_at"].is_string());
  ASSERT_EQ(body["scripts"].size(), 1u) << body["scripts"];
  EXPECT_EQ(body["scripts"][0]["script"], "recorder");
  EXPECT_EQ(body["scripts"][0]["versions"][0]["source"], kRecorder);
  EXPECT_EQ(body["scripts"][0]["aliases"][0]["alias"], "live");
  EXPECT_EQ(body["scripts"][0]["aliases"][0]["history"].size(), 1u);
  ASSERT_EQ(body["stored_runs"].size(), 1u) << body["stored_runs"];
  EXPECT_EQ(body["stored_runs"][0]["input"]["email"], "ada@example.com");
  ASSERT_EQ(body["kv"].size(), 1u) << body["kv"];
  EXPECT_EQ(body["kv"][0]["key"], "last-customer");
  EXPECT_EQ(body["kv"][0]["value"], "ada@example.com");
  ASSERT_EQ(body["events"].size(), 1u) << body["events"];
  EXPECT_EQ(body["events"][0]["payload"]["email"], "ada@example.com");
  EXPECT_EQ(body["secrets"],
            json::array({{{"name", "api_key"}, {"updated_at", body["secrets"][0]["updated_at"]}}}));
  EXPECT_EQ(body["webhook_secret"]["exists"], false);
  EXPECT_EQ(body["tokens"].size(), 4u);  // publisher, reviewer, invoker, auditor
  EXPECT_FALSE(body["tokens"][0].contains("token"));
  EXPECT_FALSE(body["tokens"][0].contains("secret_hash"));
  EXPECT_FALSE(body["audit"].empty());
  // No secret and nothing of globex, anywhere in it.
  EXPECT_FALSE(has(exported.raw, "s3cr3t-value-of-acme"));
  EXPECT_FALSE(has(exported.raw, "corral_"));  // token secrets start so
  EXPECT_FALSE(has(exported.raw, "eve@globex.example"));
  EXPECT_FALSE(has(exported.raw, "globex"));
  // The publisher's attempt (deny) and the admin's export (allow).
  json exports = audit("tenant.export");
  ASSERT_EQ(exports.size(), 2u) << exports;
  EXPECT_EQ(exports[0]["decision"], "deny");
  EXPECT_EQ(exports[1]["decision"], "allow");
  // Another tenant's export is its own, and a tenant that does not exist is 404.
  Answer other = api_->get(api_->admin(), "/v1/tenants/globex/export");
  ASSERT_EQ(other.status, 200) << other;
  EXPECT_FALSE(has(other.raw, "ada@example.com"));
  EXPECT_EQ(api_->get(api_->admin(), "/v1/tenants/nobody/export").status, 404);
}

TEST_F(TenantDataTest, ErasingDeletesTheCustomersDataKeepsTheTenantWorkingAndIsAudited) {
  publish_live(acme_, "acme", "recorder", kRecorder, {"kv", "emit"});
  publish_live(acme_, "acme", "echo", kEcho, json::array(), true);
  publish_live(globex_, "globex", "echo", kEcho, json::array());
  ASSERT_EQ(invoke(acme_, "acme", "recorder", "ada@example.com").status, 200);
  Answer cached = invoke(acme_, "acme", "echo", "ada@example.com");
  ASSERT_EQ(cached.status, 200) << cached;
  ASSERT_EQ(invoke(globex_, "globex", "echo", "eve@globex.example").status, 200);
  // A job, run to its end.
  HttpClient client(corrald_.host(), corrald_.port());
  client.token = acme_["invoker"];
  auto submitted = client.request(http::verb::post, "/v1/tenants/acme/scripts/echo/jobs",
                                  json({{"input", {{"email", "ada@example.com"}}}}).dump(),
                                  "application/json", {{"Idempotency-Key", "erase-1"}});
  ASSERT_EQ(submitted.result_int(), 202u) << submitted.body();
  std::string job = json::parse(submitted.body())["id"];
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (api_->get(acme_["invoker"], "/v1/tenants/acme/scripts/echo/jobs/" + job)
                 .body.value("state", "") != "succeeded" &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  wait_for_stored_runs("recorder", 1);

  EXPECT_EQ(api_->del(acme_["publisher"], "/v1/tenants/acme/data").status, 403);
  Answer erased = api_->del(api_->admin(), "/v1/tenants/acme/data");
  ASSERT_EQ(erased.status, 200) << erased;
  EXPECT_EQ(erased.body["tenant"], "acme");
  EXPECT_GE(erased.body["erased"]["stored_runs"], 2);  // recorder, echo, and the job's run
  EXPECT_EQ(erased.body["erased"]["jobs"], 1);
  EXPECT_EQ(erased.body["erased"]["kv_entries"], 1);
  EXPECT_EQ(erased.body["erased"]["events"], 1);
  EXPECT_GE(erased.body["erased"]["cached_results"], 1);

  Answer after = api_->get(api_->admin(), "/v1/tenants/acme/export");
  ASSERT_EQ(after.status, 200) << after;
  EXPECT_FALSE(has(after.raw, "ada@example.com")) << after;
  EXPECT_TRUE(after.body["stored_runs"].empty());
  EXPECT_TRUE(after.body["jobs"].empty());
  EXPECT_TRUE(after.body["kv"].empty());
  EXPECT_TRUE(after.body["events"].empty());
  EXPECT_EQ(after.body["scripts"].size(), 2u);  // the tenant's own work stays
  EXPECT_EQ(api_->get(acme_["invoker"], "/v1/tenants/acme/scripts/echo/jobs/" + job).status, 404);
  // The cached result went too: the next identical run is computed again.
  Answer recomputed = invoke(acme_, "acme", "echo", "ada@example.com");
  ASSERT_EQ(recomputed.status, 200) << recomputed;
  auto cache = recomputed.response.find("Corral-Cache");
  ASSERT_NE(cache, recomputed.response.end());
  EXPECT_EQ(std::string(cache->value()), "miss");
  // The tenant keeps working, and other tenants keep their data.
  EXPECT_EQ(invoke(acme_, "acme", "recorder", "bob@example.com").status, 200);
  Answer globex_runs = api_->get(globex_["auditor"], "/v1/tenants/globex/scripts/echo/runs");
  EXPECT_EQ(globex_runs.body["runs"].size(), 1u) << globex_runs;

  json entries = audit("tenant.data.erase");
  ASSERT_EQ(entries.size(), 2u) << entries;
  EXPECT_EQ(entries[0]["decision"], "deny");
  EXPECT_EQ(entries[1]["decision"], "allow");
  EXPECT_TRUE(has(entries[1]["reason"], "1 jobs, 0 webhook deliveries, 1 kv entries, 1 events"))
      << entries;
  EXPECT_EQ(api_->del(api_->admin(), "/v1/tenants/nobody/data").status, 404);
}

}  // namespace
}  // namespace corral::testing
