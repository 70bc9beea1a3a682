// Every route × every role × the token's own tenant and another one: 401 without a valid token,
// 404 for another tenant's resources (as if they did not exist), 403 for a role the route does not
// allow, 2xx otherwise; and every denial lands in the audit trail.
#include <gtest/gtest.h>

#include <functional>
#include <set>

#include "api/api.h"
#include "registry/api_client.h"

namespace {

using corral::testing::Answer;
using corral::testing::ApiClient;
using corral::testing::CorraldProcess;
using corral::testing::kDoubler;
using corral::testing::kRoles;
namespace http = boost::beast::http;
using nlohmann::json;

struct Request {
  http::verb method;
  std::string target;
  json body = nullptr;
  std::vector<std::pair<std::string, std::string>> headers = {};
};

class AccessMatrix : public ::testing::Test {
 protected:
  void SetUp() override {
    api_ = std::make_unique<ApiClient>(corrald_);
    // The built-in policy, except that runs keep their inputs, so that replay has one to run, and
    // that the matrix may publish as often as it needs.
    Answer policy = api_->put(
        api_->admin(), "/v1/policy",
        {{"document", "defaults: {runs: {inputs: true}, quotas: {publishes_per_minute: 10000}}"}});
    ASSERT_EQ(policy.status, 201) << policy;
    for (const std::string tenant : {"acme", "beta"}) {
      tokens_[tenant] = api_->tenant_with_tokens(tenant);
      auto& t = tokens_[tenant];
      int64_t base = api_->publish(t["publisher"], tenant, "base", kDoubler);
      api_->approve(t["reviewer"], tenant, "base", base);
      api_->set_alias(t["reviewer"], tenant, "base", "live", base);
    }
  }

  // A fresh version of script "s" in the tenant, in the state the route needs.
  int64_t fresh_version(const std::string& tenant, bool approved) {
    auto& t = tokens_[tenant];
    int64_t version =
        api_->publish(t["publisher"], tenant, "s",
                      "function handle() return " + std::to_string(++counter_) + " end");
    if (approved) api_->approve(t["reviewer"], tenant, "s", version);
    return version;
  }

  // Each route's request against a tenant, with whatever it needs made first. Routes without a
  // {tenant} ignore it.
  std::map<std::string, std::function<Request(const std::string&)>> requests() {
    auto script = [](const std::string& tenant) {
      return "/v1/tenants/" + tenant + "/scripts/base";
    };
    auto version = [this](const std::string& tenant, bool approved) {
      return ApiClient::version_path(tenant, "s", fresh_version(tenant, approved));
    };
    return {
        {"POST /v1/run",
         [](auto&) {
           return Request{
               http::verb::post, "/v1/run", {{"source", kDoubler}, {"input", {{"n", 1}}}}};
         }},
        {"POST /v1/tenants",
         [this](auto&) {
           return Request{
               http::verb::post, "/v1/tenants", {{"name", "t" + std::to_string(++counter_)}}};
         }},
        {"GET /v1/tenants",
         [](auto&) {
           return Request{http::verb::get, "/v1/tenants"};
         }},
        {"GET /v1/tenants/{tenant}",
         [](auto& tenant) {
           return Request{http::verb::get, "/v1/tenants/" + tenant};
         }},
        {"GET /v1/tokens",
         [](auto&) {
           return Request{http::verb::get, "/v1/tokens"};
         }},
        {"GET /v1/tenants/{tenant}/tokens",
         [](auto& tenant) {
           return Request{http::verb::get, "/v1/tenants/" + tenant + "/tokens"};
         }},
        {"POST /v1/tokens",
         [](auto&) {
           return Request{http::verb::post, "/v1/tokens", {{"role", "admin"}}};
         }},
        {"DELETE /v1/tokens/{token}",
         [this](auto&) {
           Answer made = api_->post(api_->admin(), "/v1/tokens", {{"role", "admin"}});
           return Request{http::verb::delete_, "/v1/tokens/" + made.body.value("id", "")};
         }},
        {"POST /v1/tenants/{tenant}/tokens",
         [](auto& tenant) {
           return Request{
               http::verb::post, "/v1/tenants/" + tenant + "/tokens", {{"role", "invoker"}}};
         }},
        {"DELETE /v1/tenants/{tenant}/tokens/{token}",
         [this](auto& tenant) {
           Answer made = api_->post(api_->admin(), "/v1/tenants/" + tenant + "/tokens",
                                    {{"role", "invoker"}});
           return Request{http::verb::delete_,
                          "/v1/tenants/" + tenant + "/tokens/" + made.body.value("id", "")};
         }},
        {"GET /v1/tenants/{tenant}/scripts",
         [](auto& tenant) {
           return Request{http::verb::get, "/v1/tenants/" + tenant + "/scripts"};
         }},
        {"GET /v1/tenants/{tenant}/scripts/{script}/versions",
         [=, this](auto& tenant) {
           return Request{http::verb::get, script(tenant) + "/versions"};
         }},
        {"POST /v1/tenants/{tenant}/scripts/{script}/versions",
         [=, this](auto& tenant) {
           return Request{
               http::verb::post,
               script(tenant) + "/versions",
               {{"source", "function handle() return " + std::to_string(++counter_) + " end"},
                {"manifest", corral::testing::manifest()}}};
         }},
        {"GET /v1/tenants/{tenant}/scripts/{script}/versions/{version}",
         [=, this](auto& tenant) {
           return Request{http::verb::get, script(tenant) + "/versions/1"};
         }},
        {"POST /v1/tenants/{tenant}/scripts/{script}/versions/{version}/approve",
         [=, this](auto& tenant) {
           return Request{http::verb::post, version(tenant, false) + "/approve"};
         }},
        {"POST /v1/tenants/{tenant}/scripts/{script}/versions/{version}/deprecate",
         [=, this](auto& tenant) {
           return Request{http::verb::post, version(tenant, true) + "/deprecate"};
         }},
        {"POST /v1/tenants/{tenant}/scripts/{script}/versions/{version}/disable",
         [=, this](auto& tenant) {
           return Request{http::verb::post, version(tenant, false) + "/disable"};
         }},
        {"GET /v1/tenants/{tenant}/scripts/{script}/aliases",
         [=, this](auto& tenant) {
           return Request{http::verb::get, script(tenant) + "/aliases"};
         }},
        {"GET /v1/tenants/{tenant}/scripts/{script}/aliases/{alias}/history",
         [=, this](auto& tenant) {
           return Request{http::verb::get, script(tenant) + "/aliases/live/history"};
         }},
        {"PUT /v1/tenants/{tenant}/scripts/{script}/aliases/{alias}",
         [=, this](auto& tenant) {
           int64_t approved = fresh_version(tenant, true);
           return Request{http::verb::put,
                          "/v1/tenants/" + tenant + "/scripts/s/aliases/live",
                          {{"version", approved}}};
         }},
        {"POST /v1/tenants/{tenant}/scripts/{script}/invoke",
         [=, this](auto& tenant) {
           return Request{http::verb::post, script(tenant) + "/invoke", {{"input", {{"n", 2}}}}};
         }},
        {"GET /v1/tenants/{tenant}/scripts/{script}/runs",
         [script](auto& tenant) {
           return Request{http::verb::get, script(tenant) + "/runs"};
         }},
        {"GET /v1/tenants/{tenant}/scripts/{script}/runs/{run}",
         [this, script](auto& tenant) {
           return Request{http::verb::get, script(tenant) + "/runs/" + stored_run(tenant)};
         }},
        {"POST /v1/tenants/{tenant}/scripts/{script}/versions/{version}/replay",
         [this, script](auto& tenant) {
           return Request{http::verb::post,
                          script(tenant) + "/versions/1/replay?run=" + stored_run(tenant)};
         }},
        {"GET /v1/audit",
         [](auto&) {
           return Request{http::verb::get, "/v1/audit"};
         }},
        {"GET /v1/audit/verify",
         [](auto&) {
           return Request{http::verb::get, "/v1/audit/verify"};
         }},
        {"GET /v1/policy",
         [](auto&) {
           return Request{http::verb::get, "/v1/policy"};
         }},
        {"PUT /v1/policy",
         [](auto&) {
           return Request{http::verb::put,
                          "/v1/policy",
                          {{"document", "defaults:\n  limits: {fuel: 2000000}\n"}}};
         }},
        {"GET /v1/policy/versions",
         [](auto&) {
           return Request{http::verb::get, "/v1/policy/versions"};
         }},
        {"POST /v1/policy/rollback",
         [](auto&) {
           return Request{http::verb::post, "/v1/policy/rollback", {{"version", 0}}};
         }},
        {"GET /v1/policy/explain",
         [](auto&) {
           return Request{http::verb::get, "/v1/policy/explain?tenant=acme&action=kv.get"};
         }},
        {"GET /v1/tenants/{tenant}/export",
         [](auto& tenant) {
           return Request{http::verb::get, "/v1/tenants/" + tenant + "/export"};
         }},
        {"GET /v1/tenants/{tenant}/usage",
         [](auto& tenant) {
           return Request{http::verb::get, "/v1/tenants/" + tenant + "/usage"};
         }},
        {"DELETE /v1/tenants/{tenant}/data",
         [](auto& tenant) {
           return Request{http::verb::delete_, "/v1/tenants/" + tenant + "/data"};
         }},
        {"GET /v1/tenants/{tenant}/secrets",
         [](auto& tenant) {
           return Request{http::verb::get, "/v1/tenants/" + tenant + "/secrets"};
         }},
        {"PUT /v1/tenants/{tenant}/secrets/{name}",
         [](auto& tenant) {
           return Request{
               http::verb::put, "/v1/tenants/" + tenant + "/secrets/token", {{"value", "v"}}};
         }},
        {"DELETE /v1/tenants/{tenant}/secrets/{name}",
         [this](auto& tenant) {
           std::string path = "/v1/tenants/" + tenant + "/secrets/gone";
           api_->put(api_->admin(), path, {{"value", "v"}});
           return Request{http::verb::delete_, path};
         }},
        {"GET /v1/tenants/{tenant}/events",
         [](auto& tenant) {
           return Request{http::verb::get, "/v1/tenants/" + tenant + "/events"};
         }},
        {"POST /v1/tenants/{tenant}/scripts/{script}/jobs",
         [this, script](auto& tenant) {
           return Request{http::verb::post,
                          script(tenant) + "/jobs",
                          {{"input", {{"n", 1}}}},
                          {{"Idempotency-Key", "matrix-" + std::to_string(++counter_)}}};
         }},
        {"GET /v1/tenants/{tenant}/scripts/{script}/jobs",
         [script](auto& tenant) {
           return Request{http::verb::get, script(tenant) + "/jobs"};
         }},
        {"GET /v1/tenants/{tenant}/scripts/{script}/jobs/{job}",
         [this, script](auto& tenant) {
           return Request{http::verb::get, script(tenant) + "/jobs/" + queued_job(tenant)};
         }},
        {"DELETE /v1/tenants/{tenant}/scripts/{script}/jobs/{job}",
         [this, script](auto& tenant) {
           return Request{http::verb::delete_, script(tenant) + "/jobs/" + queued_job(tenant)};
         }},
        {"POST /v1/tenants/{tenant}/webhook-secret",
         [](auto& tenant) {
           return Request{http::verb::post, "/v1/tenants/" + tenant + "/webhook-secret"};
         }},
        {"GET /v1/tenants/{tenant}/deliveries",
         [](auto& tenant) {
           return Request{http::verb::get, "/v1/tenants/" + tenant + "/deliveries?state=dead"};
         }},
    };
  }

  // A job of script "base" that stays queued (this corrald runs no jobs), so it can be cancelled.
  std::string queued_job(const std::string& tenant) {
    Answer made = api_->call(tokens_[tenant]["invoker"], http::verb::post,
                             "/v1/tenants/" + tenant + "/scripts/base/jobs", {{"input", 1}},
                             {{"Idempotency-Key", "matrix-" + std::to_string(++counter_)}});
    EXPECT_EQ(made.status, 202) << made;
    return made.body.value("id", "none");
  }

  // The id of a fresh stored run of script "base" (its input kept: see SetUp).
  std::string stored_run(const std::string& tenant) {
    Answer ran =
        api_->post(tokens_[tenant]["invoker"], "/v1/tenants/" + tenant + "/scripts/base/invoke",
                   {{"input", {{"n", 1}}}});
    EXPECT_EQ(ran.status, 200) << ran;
    return ran.body.value("invocation_id", "none");
  }

  static std::string method_name(http::verb verb) { return std::string(http::to_string(verb)); }

  // No job runners: jobs stay queued, so that DELETE …/jobs/{job} finds one to cancel.
  // The matrix makes hundreds of denials from one client on purpose: they are not paced here
  // (AccessMatrixPacing below shows the pacing).
  CorraldProcess corrald_{{"--job-threads", "0", "--denials-per-client-per-minute", "100000000"}};
  std::unique_ptr<ApiClient> api_;
  std::map<std::string, std::map<std::string, std::string>> tokens_;
  int counter_ = 0;
};

TEST_F(AccessMatrix, EveryRouteEveryRoleOwnAndOtherTenant) {
  auto table = requests();
  int checked = 0;
  for (const auto& route : corral::api::route_table()) {
    std::string key = route.method + " " + route.pattern;
    if (route.roles.empty()) continue;  // healthz, metrics, openapi: no token needed
    ASSERT_TRUE(table.contains(key)) << "the matrix has no request for " << key;
    bool tenant_scoped = route.pattern.find("{tenant}") != std::string::npos;
    std::set<std::string> allowed;
    for (auto role : route.roles) allowed.insert(std::string(corral::auth::to_string(role)));

    for (const auto& role : kRoles) {
      for (const std::string place : {"own", "other"}) {
        if (!tenant_scoped && place == "other") continue;
        // Tokens of acme; "other" aims them at beta. The admin token belongs to no tenant.
        std::string tenant = place == "own" ? "acme" : "beta";
        Request request = table[key](tenant);
        Answer answer = api_->call(tokens_["acme"][role], request.method, request.target,
                                   request.body, request.headers);
        int expected = 0;
        if (place == "other" && role != "admin") {
          expected = 404;
        } else if (!allowed.contains(role)) {
          expected = 403;
        }
        std::string where = key + " as " + role + " on " + place + " tenant";
        if (expected) {
          EXPECT_EQ(answer.status, expected) << where << ": " << answer;
          EXPECT_EQ(answer.response[http::field::content_type], "application/problem+json")
              << where;
          EXPECT_FALSE(answer.body.value("hint", "").empty()) << where;
        } else {
          EXPECT_GE(answer.status, 200) << where << ": " << answer;
          EXPECT_LT(answer.status, 300) << where << ": " << answer;
        }
        ++checked;
      }
    }
    // Without a token, and with one that is not known: 401 whatever the route.
    Request request = table[key]("acme");
    Answer anonymous =
        api_->call("", request.method, request.target, request.body, request.headers);
    EXPECT_EQ(anonymous.status, 401) << key << ": " << anonymous;
    EXPECT_EQ(anonymous.response[http::field::www_authenticate], "Bearer realm=\"corral\"");
    Answer forged =
        api_->call("corral_" + std::string(64, 'f'), request.method, request.target, request.body);
    EXPECT_EQ(forged.status, 401) << key << ": " << forged;
    checked += 2;
  }
  EXPECT_GT(checked, 150);
}

TEST_F(AccessMatrix, AnotherTenantsResourceLooksExactlyLikeOneThatDoesNotExist) {
  const std::string& publisher = tokens_["acme"]["publisher"];
  Answer other = api_->get(publisher, "/v1/tenants/beta/scripts/base/versions");
  Answer missing = api_->get(publisher, "/v1/tenants/nosuch/scripts/base/versions");
  ASSERT_EQ(other.status, 404);
  ASSERT_EQ(missing.status, 404);
  json a = other.body, b = missing.body;
  EXPECT_EQ(a["title"], b["title"]);
  EXPECT_EQ(a["hint"], b["hint"]);
  EXPECT_NE(a["detail"].get<std::string>().find("\"beta\""), std::string::npos);
}

// Each token is used (and so kept in corrald's token cache) before it expires or is revoked:
// the cache must not let it through afterwards.
TEST_F(AccessMatrix, ExpiredAndRevokedTokensAre401) {
  Answer made = api_->post(api_->admin(), "/v1/tenants/acme/tokens",
                           {{"role", "invoker"}, {"expires_in_s", 1}});
  ASSERT_EQ(made.status, 201) << made;
  EXPECT_EQ(api_->get(made.body["token"], "/v1/tenants/acme").status, 200);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  Answer expired = api_->get(made.body["token"], "/v1/tenants/acme");
  EXPECT_EQ(expired.status, 401);
  EXPECT_NE(expired.body["detail"].get<std::string>().find("expired"), std::string::npos)
      << expired;

  Answer other = api_->post(api_->admin(), "/v1/tenants/acme/tokens", {{"role", "reviewer"}});
  EXPECT_EQ(api_->get(other.body["token"], "/v1/tenants/acme").status, 200);
  Answer revoked =
      api_->del(api_->admin(), "/v1/tenants/acme/tokens/" + other.body["id"].get<std::string>());
  EXPECT_EQ(revoked.status, 200) << revoked;
  Answer after = api_->get(other.body["token"], "/v1/tenants/acme");
  EXPECT_EQ(after.status, 401);
  EXPECT_NE(after.body["detail"].get<std::string>().find("revoked"), std::string::npos) << after;
  // The cache was used along the way, and /metrics says so.
  EXPECT_GT(corrald_.metric(R"(corral_token_cache_lookups_total{result="hit"})"), 0);
  EXPECT_GE(corrald_.metric("corral_token_cache_entries"), 0) << "the series is missing";
  // A token of acme cannot be revoked through beta's path: it is not there.
  Answer third = api_->post(api_->admin(), "/v1/tenants/acme/tokens", {{"role", "invoker"}});
  EXPECT_EQ(
      api_->del(api_->admin(), "/v1/tenants/beta/tokens/" + third.body["id"].get<std::string>())
          .status,
      404);
}

TEST_F(AccessMatrix, TokensAreStoredOnlyAsHashesAndShownOnce) {
  Answer made = api_->post(api_->admin(), "/v1/tenants/acme/tokens", {{"role", "auditor"}});
  std::string secret = made.body["token"];
  EXPECT_EQ(secret.size(), 7u + 64u);  // "corral_" and 256 bits in hex
  std::string database = corral::testing::read_text(corrald_.data_dir() / "corral.db") +
                         corral::testing::read_text(corrald_.data_dir() / "corral.db-wal");
  EXPECT_EQ(database.find(secret), std::string::npos);
  EXPECT_EQ(database.find(secret.substr(7)), std::string::npos);
  for (const auto& line : corrald_.log_lines_settled())
    EXPECT_EQ(line.dump().find(secret), std::string::npos);
  Answer audit = api_->get(api_->admin(), "/v1/audit?action=token.create&limit=1000");
  EXPECT_EQ(audit.raw.find(secret), std::string::npos);
}

TEST_F(AccessMatrix, DenialsAreAudited) {
  api_->post(tokens_["acme"]["invoker"], "/v1/tenants/acme/scripts/base/versions/1/approve");
  api_->get(tokens_["acme"]["publisher"], "/v1/tenants/beta/scripts");
  api_->get("", "/v1/tenants");
  Answer audit = api_->get(api_->admin(), "/v1/audit?limit=1000");
  ASSERT_EQ(audit.status, 200);
  std::set<std::string> seen;
  for (const auto& entry : audit.body["entries"]) {
    if (entry["decision"] == "deny")
      seen.insert(entry["action"].get<std::string>() + " " + entry["tenant"].get<std::string>());
  }
  EXPECT_TRUE(seen.contains("version.approve acme")) << audit;
  // acme's probe of beta's paths is acme's record: beta's trail never holds what another
  // tenant's token chose to send.
  EXPECT_TRUE(seen.contains("script.list acme")) << audit;
  EXPECT_FALSE(seen.contains("script.list beta")) << audit;
  EXPECT_TRUE(seen.contains("auth ")) << audit;
}

// The review's floods, at the trail: 200 requests with no token naming beta, and 200 probes of
// beta's paths (each a different path) with acme's token. Beta's trail gets nothing; the rest is
// one entry per kind and reason, with a count once the window has passed (not waited for here:
// the counts are seen in AuditTest with a fake clock).
TEST_F(AccessMatrix, FloodsOfDenialsAddAFewEntriesAndNoneToTheVictimsTrail) {
  int64_t before = api_->get(api_->admin(), "/v1/audit?limit=1000").body["entries"].size();
  for (int i = 0; i < 200; ++i) {
    api_->get("", "/v1/tenants/beta/scripts");
    api_->get("corral_" + std::string(64, 'f'), "/v1/tenants/beta/scripts/x" + std::to_string(i));
    api_->get(tokens_["acme"]["publisher"], "/v1/tenants/beta/scripts/p" + std::to_string(i));
  }
  Answer audit = api_->get(api_->admin(), "/v1/audit?limit=1000");
  ASSERT_EQ(audit.status, 200);
  int64_t added = static_cast<int64_t>(audit.body["entries"].size()) - before;
  EXPECT_LE(added, 4) << audit;
  Answer beta = api_->get(api_->admin(), "/v1/audit?tenant=beta&limit=1000");
  for (const auto& entry : beta.body["entries"]) EXPECT_NE(entry["decision"], "deny") << entry;
}

TEST_F(AccessMatrix, AuditorsReadOnlyTheirTenant) {
  Answer own = api_->get(tokens_["acme"]["auditor"], "/v1/audit?limit=1000");
  ASSERT_EQ(own.status, 200) << own;
  ASSERT_FALSE(own.body["entries"].empty());
  for (const auto& entry : own.body["entries"]) EXPECT_EQ(entry["tenant"], "acme");
  EXPECT_EQ(api_->get(tokens_["acme"]["auditor"], "/v1/audit?tenant=beta").status, 404);
  Answer all = api_->get(api_->admin(), "/v1/audit?tenant=beta&action=version.approve");
  ASSERT_EQ(all.status, 200);
  ASSERT_EQ(all.body["entries"].size(), 1u) << all;
  EXPECT_EQ(all.body["entries"][0]["tenant"], "beta");
}

}  // namespace
