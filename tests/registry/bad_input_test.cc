// Each kind of bad input gets a clear error: what is wrong, where, and what to do.
#include <gtest/gtest.h>

#include "registry/api_client.h"

namespace {

using corral::testing::Answer;
using corral::testing::ApiClient;
using corral::testing::CorraldProcess;
using corral::testing::kDoubler;
using nlohmann::json;
namespace http = boost::beast::http;

class BadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    api_ = std::make_unique<ApiClient>(corrald_);
    tokens_ = api_->tenant_with_tokens("acme");
  }

  // The answer is a problem with the status, and its detail mentions `says`.
  static void expect_problem(const Answer& answer, int status, const std::string& says) {
    EXPECT_EQ(answer.status, status) << answer;
    EXPECT_EQ(answer.response[http::field::content_type], "application/problem+json") << answer;
    EXPECT_NE(answer.body.value("detail", "").find(says), std::string::npos)
        << "expected \"" << says << "\" in " << answer;
    EXPECT_FALSE(answer.body.value("hint", "").empty()) << answer;
  }

  Answer publish(const json& body, const std::string& script = "s") {
    return api_->post(tokens_["publisher"], "/v1/tenants/acme/scripts/" + script + "/versions",
                      body);
  }

  CorraldProcess corrald_;
  std::unique_ptr<ApiClient> api_;
  std::map<std::string, std::string> tokens_;
};

TEST_F(BadInput, UnknownTenant) {
  expect_problem(api_->get(api_->admin(), "/v1/tenants/nosuch"), 404, "no tenant named \"nosuch\"");
  expect_problem(api_->post(api_->admin(), "/v1/tenants/nosuch/tokens", {{"role", "invoker"}}), 404,
                 "nosuch");
  expect_problem(api_->post(tokens_["publisher"], "/v1/tenants/nosuch/scripts/s/versions",
                            {{"source", kDoubler}, {"manifest", corral::testing::manifest()}}),
                 404, "nosuch");
}

TEST_F(BadInput, NamesWithSlashes) {
  Answer tenant = api_->post(api_->admin(), "/v1/tenants", {{"name", "a/b"}});
  expect_problem(tenant, 400, "contains '/' at position 2");
  EXPECT_EQ(tenant.body["field"], "name");
  expect_problem(
      publish({{"source", kDoubler}, {"manifest", corral::testing::manifest()}}, "a%2Fb"), 400,
      "script name contains '/'");
  // An unescaped slash is simply another path: no such route.
  EXPECT_EQ(
      publish({{"source", kDoubler}, {"manifest", corral::testing::manifest()}}, "a/b").status,
      404);
}

TEST_F(BadInput, NamesTenKilobytesLong) {
  std::string long_name(10 * 1024, 'a');
  expect_problem(api_->post(api_->admin(), "/v1/tenants", {{"name", long_name}}), 400,
                 "10240 bytes long; at most 64");
  // In a path it does not even fit the request line the server accepts.
  Answer in_path = api_->get(api_->admin(), "/v1/tenants/" + long_name);
  expect_problem(in_path, 431, "exceed 8 KiB");
  // Long but within the header limit: the name rule answers.
  expect_problem(
      api_->get(api_->admin(), "/v1/tenants/acme/scripts/" + std::string(2000, 'b') + "/versions"),
      400, "2000 bytes long");
}

TEST_F(BadInput, InvalidUtf8) {
  corral::testing::HttpClient raw(corrald_.host(), corrald_.port(), api_->admin());
  auto response = raw.request(http::verb::post, "/v1/tenants", "{\"name\": \"caf\xc3\x28\"}");
  EXPECT_EQ(response.result_int(), 400) << response.body();
  EXPECT_NE(response.body().find("UTF-8"), std::string::npos) << response.body();
  expect_problem(api_->get(api_->admin(), "/v1/tenants/caf%C3%28"), 400, "byte 0xc3");
}

TEST_F(BadInput, UnknownCapability) {
  Answer answer = publish(
      {{"source", kDoubler}, {"manifest", corral::testing::manifest({"log", "filesystem"})}});
  expect_problem(answer, 400, "unknown capability \"filesystem\"");
  EXPECT_EQ(answer.body["field"], "manifest.capabilities[1]");
  EXPECT_NE(answer.body["hint"].get<std::string>().find("log, kv, http, emit and secrets"),
            std::string::npos);
}

TEST_F(BadInput, MalformedManifest) {
  expect_problem(publish({{"source", kDoubler}}), 400, "manifest is missing");
  expect_problem(publish({{"source", kDoubler}, {"manifest", {{"runtime", "lua5.1"}}}}), 400,
                 "\"lua5.1\" is not supported");
  expect_problem(publish({{"source", kDoubler},
                          {"manifest", {{"runtime", "lua5.4"}, {"deterministic", "yes"}}}}),
                 400, "deterministic must be true or false");
  expect_problem(
      publish({{"source", kDoubler}, {"manifest", {{"runtime", "lua5.4"}, {"timeout", 3}}}}), 400,
      "unknown member \"timeout\"");
}

TEST_F(BadInput, TenMegabyteSource) {
  Answer huge =
      publish({{"source", std::string(10 << 20, '-')}, {"manifest", corral::testing::manifest()}});
  expect_problem(huge, 413, "exceeds this server's limit");
  // Under the body limit but over the source limit: the registry's own message.
  Answer large = publish(
      {{"source", "--" + std::string(600 << 10, 'x')}, {"manifest", corral::testing::manifest()}});
  expect_problem(large, 400, "at most 524288 are allowed");
}

TEST_F(BadInput, SourceThatDoesNotCompileOrDefinesNoHandle) {
  Answer syntax = publish({{"source", "function handle(input)\n  return input +\nend"},
                           {"manifest", corral::testing::manifest()}});
  expect_problem(syntax, 400, "syntax error");
  EXPECT_EQ(syntax.body["line"], 3);
  EXPECT_EQ(syntax.body["column"], 1);
  expect_problem(publish({{"source", "local function handle() end"},
                          {"manifest", corral::testing::manifest()}}),
                 400, "defines no global function 'handle'");
  expect_problem(publish({{"source", "handle = 3"}, {"manifest", corral::testing::manifest()}}),
                 400, "handle is number");
}

TEST_F(BadInput, VersionThatDoesNotExist) {
  api_->publish(tokens_["publisher"], "acme", "s", kDoubler);
  expect_problem(api_->get(tokens_["reviewer"], ApiClient::version_path("acme", "s", 99)), 404,
                 "version 99 of script \"s\"");
  expect_problem(
      api_->post(tokens_["reviewer"], ApiClient::version_path("acme", "s", 99) + "/approve"), 404,
      "does not exist");
  expect_problem(api_->post(tokens_["invoker"], "/v1/tenants/acme/scripts/s/invoke?version=99"),
                 404, "version 99");
  expect_problem(api_->get(tokens_["reviewer"], "/v1/tenants/acme/scripts/s/versions/two"), 400,
                 "\"two\" is not a version number");
  expect_problem(api_->get(tokens_["reviewer"], "/v1/tenants/acme/scripts/nosuch/versions"), 404,
                 "no script named \"nosuch\"");
}

TEST_F(BadInput, AliasToAPendingVersion) {
  int64_t version = api_->publish(tokens_["publisher"], "acme", "s", kDoubler);
  Answer answer = api_->put(tokens_["reviewer"], "/v1/tenants/acme/scripts/s/aliases/live",
                            {{"version", version}});
  expect_problem(answer, 409, "it is pending, and aliases point only at approved versions");
  EXPECT_NE(answer.body["hint"].get<std::string>().find("approve"), std::string::npos);
}

TEST_F(BadInput, BadTokenRequests) {
  expect_problem(api_->post(api_->admin(), "/v1/tenants/acme/tokens", {{"role", "root"}}), 400,
                 "unknown role \"root\"");
  expect_problem(api_->post(api_->admin(), "/v1/tenants/acme/tokens",
                            {{"role", "invoker"}, {"expires_in_s", -5}}),
                 400, "expires_in_s");
  expect_problem(api_->post(api_->admin(), "/v1/tenants/acme/tokens", {{"role", "admin"}}), 400,
                 "admin tokens belong to no tenant");
  expect_problem(api_->post(api_->admin(), "/v1/tenants", {{"name", "acme"}}), 409,
                 "exists already");
}

TEST_F(BadInput, UnknownQueryParameters) {
  expect_problem(api_->get(api_->admin(), "/v1/audit?tenat=acme"), 400,
                 "unknown query parameter \"tenat\"");
  expect_problem(api_->get(api_->admin(), "/v1/audit?since=yesterday"), 400, "RFC 3339");
}

}  // namespace
