// Quotas through a real corrald: the policy's rate and burst decide which invocations run, a
// refusal is a 429 naming the quota and the rule with an honest Retry-After, other tenants are
// not affected, and refusals are audited once, not once each.
//
// Timing: acme's bucket refills 5 tokens a second, so on a slow machine more than 5 calls in a
// row may succeed. The test asserts what must hold however slow the machine is (at least the
// burst, and no more than the burst plus what the rate refilled meanwhile); exact figures come
// from initech, whose rate is so low that nothing refills during the test.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "registry/api_client.h"

namespace corral::testing {
namespace {

using nlohmann::json;

constexpr const char* kPolicy = R"(tenants:
  acme:
    quotas:
      rate_per_second: 5
      burst: 5
  initech:
    quotas:
      rate_per_second: 0.01
      burst: 5
  hooli:
    quotas:
      publishes_per_minute: 18  # ten seconds' worth at once: 3
  piper:
    limits:
      fuel: 1000000
    quotas:
      cpu_ms_per_minute: 1
)";

class QuotaApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    api_ = std::make_unique<ApiClient>(corrald_);
    Answer policy = api_->put(api_->admin(), "/v1/policy", {{"document", kPolicy}});
    ASSERT_EQ(policy.status, 201) << policy;
    for (const char* tenant : {"acme", "globex", "initech"}) {
      tokens_[tenant] = api_->tenant_with_tokens(tenant);
      int64_t version = api_->publish(tokens_[tenant]["publisher"], tenant, "double", kDoubler);
      api_->approve(tokens_[tenant]["reviewer"], tenant, "double", version);
      api_->set_alias(tokens_[tenant]["reviewer"], tenant, "double", "live", version);
    }
  }

  Answer invoke(const std::string& tenant) {
    return api_->post(tokens_[tenant]["invoker"],
                      "/v1/tenants/" + tenant + "/scripts/double/invoke", {{"input", {{"n", 2}}}});
  }

  static std::string header(const Answer& answer, const char* name) {
    auto found = answer.response.find(name);
    return found == answer.response.end() ? "" : std::string(found->value());
  }

  // One connection makes 20 refused calls in a row below; the refusal hold would read each only
  // a second after the last (tests/api/refusal_hold_test.cc covers the hold).
  CorraldProcess corrald_{{"--refusal-hold-ms", "0"}};
  std::unique_ptr<ApiClient> api_;
  std::map<std::string, std::map<std::string, std::string>> tokens_;
};

TEST_F(QuotaApiTest, TheBurstIsServedThenA429NamesTheRateAndWhenToComeBack) {
  // Warm acme's worker, then let the bucket fill again, so that the burst below is fast.
  ASSERT_EQ(invoke("acme").status, 200);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));

  auto started = std::chrono::steady_clock::now();
  std::vector<Answer> served;
  Answer refused;
  for (int i = 0; i < 200; ++i) {
    Answer answer = invoke("acme");
    if (answer.status != 200) {
      refused = answer;
      break;
    }
    served.push_back(answer);
  }
  double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  ASSERT_GE(served.size(), 5u);
  // No more than the burst plus what 5 per second refilled while the calls ran (+1 for rounding).
  EXPECT_LE(static_cast<double>(served.size()), 5 + 5 * elapsed + 1) << elapsed << " s";

  ASSERT_EQ(refused.status, 429) << refused;
  EXPECT_EQ(header(refused, "Content-Type"), "application/problem+json");
  EXPECT_EQ(refused.body["type"], "urn:corral:problem:quota-exceeded") << refused;
  EXPECT_EQ(refused.body["quota"], "rate");
  EXPECT_EQ(refused.body["rule"], "tenants.acme.quotas.rate_per_second");
  EXPECT_EQ(refused.body["outcome"], "rejected");
  EXPECT_NE(refused.body["detail"].get<std::string>().find("burst of 5"), std::string::npos);
  EXPECT_FALSE(refused.body["hint"].get<std::string>().empty());
  EXPECT_EQ(refused.body["invocation_id"], header(refused, "Corral-Invocation-Id"));
  int retry_after = std::stoi(header(refused, "Retry-After"));
  EXPECT_GE(retry_after, 1);
  EXPECT_LE(retry_after, 2);  // a token every 200 ms
  EXPECT_EQ(refused.body["retry_after"], retry_after);

  // The last call served took the last whole token: it carried the warning.
  EXPECT_EQ(header(served.back(), "Corral-Quota-Warning"), "rate=100%") << served.back();

  // Another tenant is served meanwhile.
  Answer other = invoke("globex");
  EXPECT_EQ(other.status, 200) << other;
  EXPECT_EQ(header(other, "Corral-Quota-Warning"), "");

  // Once Retry-After has passed, acme is served again.
  std::this_thread::sleep_for(std::chrono::seconds(retry_after));
  Answer again = invoke("acme");
  EXPECT_EQ(again.status, 200) << again;
  EXPECT_EQ(again.body["output"]["doubled"], 4);
}

TEST_F(QuotaApiTest, WarningsFromEightyPercentAndRefusalsAreAuditedOncePerMinute) {
  std::vector<std::string> warnings;
  for (int i = 0; i < 5; ++i) {
    Answer answer = invoke("initech");
    ASSERT_EQ(answer.status, 200) << answer;
    warnings.push_back(header(answer, "Corral-Quota-Warning"));
  }
  EXPECT_EQ(warnings, (std::vector<std::string>{"", "", "", "rate=80%", "rate=100%"}));

  for (int i = 0; i < 20; ++i) {
    Answer refused = invoke("initech");
    ASSERT_EQ(refused.status, 429) << refused;
    EXPECT_EQ(refused.body["rule"], "tenants.initech.quotas.rate_per_second");
    // 0.01 per second: the next token is about 100 s away.
    int retry_after = std::stoi(header(refused, "Retry-After"));
    EXPECT_GE(retry_after, 90);
    EXPECT_LE(retry_after, 100);
  }
  // A playground run of initech's publisher counts against initech's quota too.
  Answer playground =
      api_->post(tokens_["initech"]["publisher"], "/v1/run",
                 {{"source", "function handle() return 1 end"}, {"input", json::object()}});
  EXPECT_EQ(playground.status, 429) << playground;
  EXPECT_EQ(playground.body["quota"], "rate");

  Answer rejections = api_->get(api_->admin(), "/v1/audit?tenant=initech&action=quota.reject");
  ASSERT_EQ(rejections.status, 200) << rejections;
  ASSERT_EQ(rejections.body["entries"].size(), 1u) << rejections;
  EXPECT_EQ(rejections.body["entries"][0]["decision"], "deny");
  EXPECT_NE(rejections.body["entries"][0]["reason"].get<std::string>().find(
                "tenants.initech.quotas.rate_per_second"),
            std::string::npos)
      << rejections;
  Answer warned = api_->get(api_->admin(), "/v1/audit?tenant=initech&action=quota.warning");
  ASSERT_EQ(warned.status, 200) << warned;
  EXPECT_EQ(warned.body["entries"].size(), 1u) << warned;

  EXPECT_EQ(corrald_.metric(R"(corral_quota_rejections_total{quota="rate"})"), 21);
  EXPECT_EQ(corrald_.metric(R"(corral_quota_warnings_total{quota="rate"})"), 2);
  EXPECT_EQ(corrald_.metric(R"(corral_invocations_total{outcome="rejected"})"), 21);
}

// The review's attack on publishing: a tenant at small quotas ran heavy publishes at will, each
// running the top level in a worker. Publishes have a rate of their own, and the check is held to
// the tenant's CPU quota and runs under the tenant's own limits.
TEST_F(QuotaApiTest, PublishingHasARateOfItsOwnAndCountsAgainstTheTenantsQuotas) {
  auto tokens = api_->tenant_with_tokens("hooli");
  std::vector<int> statuses;
  Answer refused;
  for (int i = 0; i < 5; ++i) {
    Answer answer = api_->post(tokens["publisher"], "/v1/tenants/hooli/scripts/s/versions",
                               {{"source", std::string(kDoubler) + "\n-- " + std::to_string(i)},
                                {"manifest", manifest(json::array())}});
    statuses.push_back(answer.status);
    if (answer.status == 429) refused = answer;
  }
  EXPECT_EQ(statuses, (std::vector<int>{201, 201, 201, 429, 429}));
  EXPECT_EQ(refused.body["quota"], "publishes_per_minute") << refused;
  EXPECT_EQ(refused.body["rule"], "tenants.hooli.quotas.publishes_per_minute") << refused;
  EXPECT_GE(std::stoi(header(refused, "Retry-After")), 1);

  // piper's own fuel (1,000,000) bounds the check: a top level that spins past it is refused,
  // although corrald's own defaults would have let it run for 50,000,000 instructions.
  auto piper = api_->tenant_with_tokens("piper");
  Answer spinning = api_->post(
      piper["publisher"], "/v1/tenants/piper/scripts/spin/versions",
      {{"source", "local n = 0 while n < 2e6 do n = n + 1 end function handle() return n end"},
       {"manifest", manifest(json::array())}});
  EXPECT_EQ(spinning.status, 400) << spinning;
  EXPECT_NE(spinning.body["detail"].get<std::string>().find("exceeded a limit"), std::string::npos)
      << spinning;
  // That check's CPU was charged to piper: with its minute's CPU (1 ms) used, the next publish is
  // refused by the cpu quota before it runs anything.
  Answer after = api_->post(piper["publisher"], "/v1/tenants/piper/scripts/ok/versions",
                            {{"source", kDoubler}, {"manifest", manifest(json::array())}});
  EXPECT_EQ(after.status, 429) << after;
  EXPECT_EQ(after.body["quota"], "cpu_ms_per_minute") << after;
}

}  // namespace
}  // namespace corral::testing
