// The lifecycle of a script through the API: publish, approve, alias, invoke, roll back,
// deprecate, disable; republishing; self-approval; pending versions; the playground.
#include <gtest/gtest.h>

#include "registry/api_client.h"

namespace {

using corral::testing::Answer;
using corral::testing::ApiClient;
using corral::testing::CorraldProcess;
using corral::testing::kDoubler;
using nlohmann::json;

class RegistryFlow : public ::testing::Test {
 protected:
  void SetUp() override {
    api_ = std::make_unique<ApiClient>(corrald_);
    tokens_ = api_->tenant_with_tokens("acme");
  }
  std::string& token(const std::string& role) { return tokens_[role]; }
  std::string scripts() { return "/v1/tenants/acme/scripts/"; }

  CorraldProcess corrald_;
  std::unique_ptr<ApiClient> api_;
  std::map<std::string, std::string> tokens_;
};

TEST_F(RegistryFlow, PublishApproveAliasInvokeAndRollBack) {
  Answer first =
      api_->post(token("publisher"), scripts() + "orders/versions",
                 {{"source", kDoubler}, {"manifest", corral::testing::manifest({"log"})}});
  ASSERT_EQ(first.status, 201) << first;
  EXPECT_EQ(first.body["version"], 1);
  EXPECT_EQ(first.body["state"], "pending");
  EXPECT_EQ(first.body["created"], true);
  EXPECT_EQ(first.body["sha256"].get<std::string>().size(), 64u);
  EXPECT_EQ(first.body["manifest"]["capabilities"], json({"log"}));

  // No alias yet: invoking "live" says so.
  Answer no_alias =
      api_->post(token("invoker"), scripts() + "orders/invoke", {{"input", {{"n", 1}}}});
  EXPECT_EQ(no_alias.status, 404) << no_alias;
  EXPECT_NE(no_alias.body["detail"].get<std::string>().find("no alias \"live\""), std::string::npos)
      << no_alias;

  api_->approve(token("reviewer"), "acme", "orders", 1);
  api_->set_alias(token("reviewer"), "acme", "orders", "live", 1);
  Answer invoked =
      api_->post(token("invoker"), scripts() + "orders/invoke", {{"input", {{"n", 21}}}});
  ASSERT_EQ(invoked.status, 200) << invoked;
  EXPECT_EQ(invoked.body["outcome"], "ok");
  EXPECT_EQ(invoked.body["output"], json({{"doubled", 42}}));
  EXPECT_EQ(invoked.body["version"], 1);
  EXPECT_EQ(invoked.body["alias"], "live");
  for (const char* member : {"logs", "stats", "invocation_id"})
    EXPECT_TRUE(invoked.body.contains(member)) << member;

  int64_t second = api_->publish(token("publisher"), "acme", "orders",
                                 "function handle(i) return {tripled = i.n * 3} end");
  EXPECT_EQ(second, 2);
  api_->approve(token("reviewer"), "acme", "orders", 2);
  api_->set_alias(token("reviewer"), "acme", "orders", "live", 2);
  EXPECT_EQ(api_->post(token("invoker"), scripts() + "orders/invoke", {{"input", {{"n", 2}}}})
                .body["output"],
            json({{"tripled", 6}}));
  // Rolling back is pointing the alias at the earlier version.
  api_->set_alias(token("reviewer"), "acme", "orders", "live", 1);
  Answer rolled =
      api_->post(token("invoker"), scripts() + "orders/invoke", {{"input", {{"n", 2}}}});
  EXPECT_EQ(rolled.body["output"], json({{"doubled", 4}}));
  EXPECT_EQ(rolled.body["version"], 1);
  // By version, and a script error keeps the same shape plus the version.
  EXPECT_EQ(
      api_->post(token("invoker"), scripts() + "orders/invoke?version=2", {{"input", {{"n", 1}}}})
          .body["version"],
      2);
  Answer failed =
      api_->post(token("invoker"), scripts() + "orders/invoke?version=2", {{"input", nullptr}});
  EXPECT_EQ(failed.status, 422) << failed;
  EXPECT_EQ(failed.body["outcome"], "script_error");
  EXPECT_EQ(failed.body["version"], 2);

  Answer versions = api_->get(token("auditor"), scripts() + "orders/versions");
  ASSERT_EQ(versions.status, 200);
  ASSERT_EQ(versions.body["versions"].size(), 2u);
  EXPECT_EQ(versions.body["versions"][0]["source"], kDoubler);
  EXPECT_FALSE(versions.body["versions"][0]["published_by"].get<std::string>().empty());
  EXPECT_FALSE(versions.body["versions"][0]["approved_by"].get<std::string>().empty());
  Answer aliases = api_->get(token("invoker"), scripts() + "orders/aliases");
  ASSERT_EQ(aliases.body["aliases"].size(), 1u);
  EXPECT_EQ(aliases.body["aliases"][0]["version"], 1);
  Answer listed = api_->get(token("publisher"), "/v1/tenants/acme/scripts");
  EXPECT_EQ(listed.body["scripts"], json::parse(R"([{"name": "orders", "latest_version": 2}])"));
}

TEST_F(RegistryFlow, RepublishingTheSameSourceReturnsTheSameVersion) {
  int64_t first = api_->publish(token("publisher"), "acme", "s", kDoubler);
  Answer again = api_->post(token("publisher"), scripts() + "s/versions",
                            {{"source", kDoubler}, {"manifest", corral::testing::manifest()}});
  EXPECT_EQ(again.status, 200) << again;
  EXPECT_EQ(again.body["created"], false);
  EXPECT_EQ(again.body["version"], first);
  EXPECT_EQ(api_->get(token("publisher"), scripts() + "s/versions").body["versions"].size(), 1u);
}

TEST_F(RegistryFlow, SelfApprovalIsRefused) {
  // One person ("carol") holding both a publisher and a reviewer token.
  std::string publisher = api_->token("acme", "publisher", "carol");
  std::string reviewer = api_->token("acme", "reviewer", "carol");
  int64_t version = api_->publish(publisher, "acme", "mine", kDoubler);
  Answer refused =
      api_->post(reviewer, ApiClient::version_path("acme", "mine", version) + "/approve");
  EXPECT_EQ(refused.status, 403) << refused;
  EXPECT_EQ(refused.body["type"], "urn:corral:problem:self-approval");
  EXPECT_NE(refused.body["hint"].get<std::string>().find("another reviewer"), std::string::npos);
  Answer denied = api_->get(api_->admin(), "/v1/audit?action=version.approve");
  ASSERT_FALSE(denied.body["entries"].empty());
  EXPECT_EQ(denied.body["entries"].back()["decision"], "deny");
  // Someone else may.
  api_->approve(token("reviewer"), "acme", "mine", version);
}

TEST(RegistryPolicy, SelfApprovalCanBeAllowed) {
  CorraldProcess corrald({"--allow-self-approval"});
  ApiClient api(corrald);
  api.tenant_with_tokens("acme");
  std::string publisher = api.token("acme", "publisher", "carol");
  std::string reviewer = api.token("acme", "reviewer", "carol");
  int64_t version = api.publish(publisher, "acme", "mine", kDoubler);
  api.approve(reviewer, "acme", "mine", version);
}

TEST_F(RegistryFlow, PendingVersionsRunOnlyForPublishersAndReviewers) {
  int64_t version = api_->publish(token("publisher"), "acme", "draft", kDoubler);
  std::string target = scripts() + "draft/invoke?version=" + std::to_string(version);
  EXPECT_EQ(api_->post(token("publisher"), target, {{"input", {{"n", 1}}}}).status, 200);
  EXPECT_EQ(api_->post(token("reviewer"), target, {{"input", {{"n", 1}}}}).status, 200);
  Answer invoker = api_->post(token("invoker"), target, {{"input", {{"n", 1}}}});
  EXPECT_EQ(invoker.status, 403) << invoker;
  EXPECT_NE(invoker.body["detail"].get<std::string>().find("pending"), std::string::npos);
}

TEST_F(RegistryFlow, DeprecatedIsServedAndFlaggedDisabledIsRefused) {
  int64_t version = api_->publish(token("publisher"), "acme", "old", kDoubler);
  api_->approve(token("reviewer"), "acme", "old", version);
  api_->set_alias(token("reviewer"), "acme", "old", "live", version);
  std::string path = ApiClient::version_path("acme", "old", version);
  EXPECT_EQ(api_->post(token("reviewer"), path + "/deprecate").body["state"], "deprecated");
  Answer deprecated =
      api_->post(token("invoker"), scripts() + "old/invoke", {{"input", {{"n", 1}}}});
  EXPECT_EQ(deprecated.status, 200);
  EXPECT_EQ(deprecated.body["deprecated"], true);
  EXPECT_EQ(deprecated.response["Deprecation"], "true");
  EXPECT_EQ(api_->post(token("reviewer"), path + "/disable").body["state"], "disabled");
  Answer disabled = api_->post(token("invoker"), scripts() + "old/invoke", {{"input", {{"n", 1}}}});
  EXPECT_EQ(disabled.status, 410) << disabled;
  EXPECT_EQ(disabled.body["type"], "urn:corral:problem:version-disabled");
  EXPECT_EQ(disabled.body["version"], version);
  // Nothing is deleted: the version is still there to read.
  EXPECT_EQ(api_->get(token("auditor"), path).body["state"], "disabled");
  Answer twice = api_->post(token("reviewer"), path + "/disable");
  EXPECT_EQ(twice.status, 409);
  Answer approve_disabled = api_->post(token("reviewer"), path + "/approve");
  EXPECT_EQ(approve_disabled.status, 409);
}

TEST_F(RegistryFlow, RunNeedsATokenAndUsesTheCallersTenant) {
  json run = {{"source", kDoubler}, {"input", {{"n", 5}}}};
  EXPECT_EQ(api_->post("", "/v1/run", run).status, 401);
  Answer ran = api_->post(token("publisher"), "/v1/run", run);
  EXPECT_EQ(ran.status, 200) << ran;
  EXPECT_EQ(ran.body["output"]["doubled"], 10);
  EXPECT_EQ(api_->post(api_->admin(), "/v1/run", run).status, 200);
  EXPECT_EQ(api_->post(token("invoker"), "/v1/run", run).status, 403);
}

TEST_F(RegistryFlow, PublishRunsTheTopLevelOnlyInAWorkerAndReportsItsErrors) {
  Answer raises = api_->post(token("publisher"), scripts() + "x/versions",
                             {{"source", "error('boom at load')\nfunction handle() end"},
                              {"manifest", corral::testing::manifest()}});
  EXPECT_EQ(raises.status, 400) << raises;
  EXPECT_NE(raises.body["detail"].get<std::string>().find("boom at load"), std::string::npos)
      << raises;
  // A main chunk ending in return is a legal script.
  EXPECT_EQ(
      api_->publish(token("publisher"), "acme", "x", "function handle() return 1 end\nreturn nil"),
      1);
}

TEST(OpenApi, ServedDocumentIsTheOneInDocs) {
  CorraldProcess corrald;
  corral::testing::HttpClient client(corrald.host(), corrald.port());
  auto response = client.request(boost::beast::http::verb::get, "/v1/openapi.yaml");
  ASSERT_EQ(response.result_int(), 200);
  EXPECT_EQ(response.body(),
            corral::testing::read_text(std::string(CORRAL_SOURCE_DIR) + "/docs/openapi.yaml"));
}

TEST(Bootstrap, AdminTokenFileIsPrivateAndLoggedOnce) {
  std::filesystem::path keep;
  {
    CorraldProcess corrald;
    auto status = std::filesystem::status(corrald.data_dir() / "admin.token");
    EXPECT_EQ(status.permissions() & std::filesystem::perms::all,
              std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    int logged = 0;
    for (const auto& line : corrald.log_lines())
      logged += line.value("msg", "") == "created an admin token";
    EXPECT_EQ(logged, 1);
    EXPECT_EQ(corrald.log_lines()[0].dump().find(corrald.admin_token()), std::string::npos);
  }
}

TEST(Bootstrap, EnvironmentSuppliesTheAdminToken) {
  std::string secret = "env-supplied-admin-token-0123456789abcdef";
  setenv("CORRAL_ADMIN_TOKEN", secret.c_str(), 1);
  CorraldProcess corrald;
  unsetenv("CORRAL_ADMIN_TOKEN");
  EXPECT_FALSE(std::filesystem::exists(corrald.data_dir() / "admin.token"));
  corral::testing::HttpClient client(corrald.host(), corrald.port(), secret);
  EXPECT_EQ(client.request(boost::beast::http::verb::get, "/v1/tenants").result_int(), 200);
}

}  // namespace
