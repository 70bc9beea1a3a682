// Usage for billing through a real corrald (issue 27, "Usage for billing"): GET
// /v1/tenants/{tenant}/usage counts each script's invocations, failures, CPU, fuel and jobs, by
// script or by hour, says what the tenant stores, keeps it across a restart, shows one tenant
// nothing of another's, and refuses a malformed window with the parameter named.
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
)";

class UsageApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    api_ = std::make_unique<ApiClient>(*corrald_);
    ASSERT_EQ(api_->put(api_->admin(), "/v1/policy", {{"document", kPolicy}}).status, 201);
    acme_ = api_->tenant_with_tokens("acme");
    globex_ = api_->tenant_with_tokens("globex");
    publish_live("orders",
                 "function handle(input) local n = 0 for i = 1, 2000 do n = n + i end "
                 "return {n = n} end");
    publish_live("broken", "function handle(input) error('boom') end");
    publish_live("batch", "function handle(input) return {done = true} end");
  }

  void publish_live(const std::string& script, const std::string& source) {
    int64_t version = api_->publish(acme_["publisher"], "acme", script, source);
    api_->approve(acme_["reviewer"], "acme", script, version);
    api_->set_alias(acme_["reviewer"], "acme", script, "live", version);
  }

  Answer invoke(const std::string& script) {
    return api_->post(acme_["invoker"], "/v1/tenants/acme/scripts/" + script + "/invoke",
                      {{"input", json::object()}});
  }

  // The row of `script` in a by-script answer (null when it has none).
  static json row_of(const Answer& usage, const std::string& script) {
    for (const auto& row : usage.body["usage"])
      if (row["script"] == script) return row;
    return nullptr;
  }

  std::unique_ptr<CorraldProcess> corrald_ = std::make_unique<CorraldProcess>();  // owns the data
  std::unique_ptr<ApiClient> api_;
  std::map<std::string, std::string> acme_;
  std::map<std::string, std::string> globex_;
};

TEST_F(UsageApiTest, CountsEachScriptsRunsAndJobsAndWhatTheTenantStores) {
  for (int i = 0; i < 3; ++i) ASSERT_EQ(invoke("orders").status, 200);
  invoke("broken");
  Answer submitted =
      api_->call(acme_["invoker"], http::verb::post, "/v1/tenants/acme/scripts/batch/jobs",
                 {{"input", json::object()}}, {{"Idempotency-Key", "usage-test-job"}});
  ASSERT_EQ(submitted.status, 202) << submitted;
  std::string job = submitted.body.value("id", "");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (api_->get(acme_["invoker"], "/v1/tenants/acme/scripts/batch/jobs/" + job)
                 .body.value("state", "") != "succeeded" &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }

  Answer usage = api_->get(acme_["auditor"], "/v1/tenants/acme/usage");
  ASSERT_EQ(usage.status, 200) << usage;
  EXPECT_EQ(usage.body["tenant"], "acme");
  EXPECT_EQ(usage.body["by"], "script");
  json orders = row_of(usage, "orders");
  ASSERT_TRUE(orders.is_object()) << usage;
  EXPECT_EQ(orders["invocations"], 3);
  EXPECT_EQ(orders["failures"], 0);
  EXPECT_GT(orders["fuel"].get<int64_t>(), 0) << "a loop of 2,000 steps burns fuel";
  EXPECT_GE(orders["cpu_ms"].get<double>(), 0);
  json broken = row_of(usage, "broken");
  ASSERT_TRUE(broken.is_object()) << usage;
  EXPECT_EQ(broken["invocations"], 1);
  EXPECT_EQ(broken["failures"], 1);
  json batch = row_of(usage, "batch");
  ASSERT_TRUE(batch.is_object()) << usage;
  EXPECT_EQ(batch["jobs"], 1);
  EXPECT_EQ(batch["invocations"], 1) << "the job's run";
  EXPECT_EQ(usage.body["total"]["invocations"], 5);
  EXPECT_EQ(usage.body["total"]["failures"], 1);
  EXPECT_EQ(usage.body["storage"]["versions"], 3);
  EXPECT_GT(usage.body["storage"]["version_bytes"].get<int64_t>(), 0);

  // By hour: this hour's one row holds the same totals.
  Answer hourly = api_->get(api_->admin(), "/v1/tenants/acme/usage?by=hour");
  ASSERT_EQ(hourly.status, 200) << hourly;
  ASSERT_EQ(hourly.body["usage"].size(), 1u) << hourly;
  EXPECT_EQ(hourly.body["usage"][0]["invocations"], 5);
  EXPECT_TRUE(hourly.body["usage"][0]["hour"].get<std::string>().ends_with(":00:00.000Z"))
      << hourly;

  // A window before any of it holds nothing.
  Answer earlier = api_->get(api_->admin(),
                             "/v1/tenants/acme/usage?from=2020-01-01T00:00:00Z&to="
                             "2020-01-02T00:00:00Z");
  ASSERT_EQ(earlier.status, 200) << earlier;
  EXPECT_TRUE(earlier.body["usage"].empty()) << earlier;
  EXPECT_EQ(earlier.body["total"]["invocations"], 0);

  // Kept in the store: a restarted corrald answers the same.
  api_.reset();
  corrald_->terminate_and_wait();
  CorraldProcess again({}, corrald_->directory());
  ApiClient after(again);
  Answer kept = after.get(after.admin(), "/v1/tenants/acme/usage");
  ASSERT_EQ(kept.status, 200) << kept;
  EXPECT_EQ(kept.body["total"]["invocations"], 5) << kept;
  EXPECT_EQ(kept.body["total"]["jobs"], 1) << kept;
}

TEST_F(UsageApiTest, ATenantSeesOnlyItsOwnUsage) {
  ASSERT_EQ(invoke("orders").status, 200);
  Answer theirs = api_->get(globex_["auditor"], "/v1/tenants/acme/usage");
  EXPECT_TRUE(theirs.status == 403 || theirs.status == 404) << theirs;
  Answer own = api_->get(globex_["auditor"], "/v1/tenants/globex/usage");
  ASSERT_EQ(own.status, 200) << own;
  EXPECT_TRUE(own.body["usage"].empty()) << own;
  EXPECT_EQ(own.body["total"]["invocations"], 0);
  // An invoker calls scripts; what they cost is for the tenant's people.
  EXPECT_EQ(api_->get(acme_["invoker"], "/v1/tenants/acme/usage").status, 403);
}

TEST_F(UsageApiTest, AMalformedWindowIsRefusedNamingTheParameter) {
  auto refused = [&](const std::string& query, const std::string& where) {
    Answer answer = api_->get(api_->admin(), "/v1/tenants/acme/usage?" + query);
    EXPECT_EQ(answer.status, 400) << query << ": " << answer;
    EXPECT_NE(answer.raw.find(where), std::string::npos) << query << ": " << answer;
  };
  refused("by=day", "query.by");
  refused("from=yesterday", "query.from");
  refused("to=2026-13-45", "query.to");
  refused("from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", "query.from");
  refused("from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", "query.to");
}

}  // namespace
}  // namespace corral::testing
