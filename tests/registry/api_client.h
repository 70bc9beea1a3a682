// Speaking the /v1 API of a real corrald in tests: one call per line, answers as status + JSON,
// and a tenant set up with a token for every role.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "api/corrald_process.h"

namespace corral::testing {

struct Answer {
  int status = 0;
  nlohmann::json body;
  std::string raw;
  http::response<http::string_body> response;
};

inline std::ostream& operator<<(std::ostream& out, const Answer& answer) {
  return out << answer.status << " " << answer.raw.substr(0, 600);
}

inline const std::vector<std::string> kRoles = {"admin", "publisher", "reviewer", "invoker",
                                                "auditor"};

inline const char* kDoubler = "function handle(input, ctx) return {doubled = input.n * 2} end";

inline nlohmann::json manifest(nlohmann::json capabilities = nlohmann::json::array()) {
  return {{"runtime", "lua5.4"},
          {"capabilities", capabilities},
          {"deterministic", false},
          {"description", "test"}};
}

class ApiClient {
 public:
  explicit ApiClient(const CorraldProcess& corrald)
      : host_(corrald.host()),
        port_(corrald.port()),
        http_(std::make_unique<HttpClient>(host_, port_)),
        admin_(corrald.admin_token()) {}

  const std::string& admin() const { return admin_; }

  Answer call(const std::string& token, http::verb method, const std::string& target,
              const nlohmann::json& body = nullptr,
              const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    http_->token = token;
    auto response = http_->request(method, target, body.is_null() ? "" : body.dump(),
                                   "application/json", headers);
    // The server closes the connection after some refusals (413, 431): open another.
    if (!response.keep_alive()) http_ = std::make_unique<HttpClient>(host_, port_);
    Answer answer{static_cast<int>(response.result_int()), nullptr, response.body(), response};
    answer.body = nlohmann::json::parse(response.body(), nullptr, false);
    return answer;
  }
  Answer get(const std::string& token, const std::string& target) {
    return call(token, http::verb::get, target);
  }
  Answer post(const std::string& token, const std::string& target,
              const nlohmann::json& body = nullptr) {
    return call(token, http::verb::post, target, body);
  }
  Answer put(const std::string& token, const std::string& target, const nlohmann::json& body) {
    return call(token, http::verb::put, target, body);
  }
  Answer del(const std::string& token, const std::string& target) {
    return call(token, http::verb::delete_, target);
  }

  // A new tenant and one token per role ("admin" is the server's admin token); subjects are
  // "<tenant>-<role>", so no two roles are the same person.
  std::map<std::string, std::string> tenant_with_tokens(const std::string& name) {
    Answer created = post(admin_, "/v1/tenants", {{"name", name}});
    EXPECT_EQ(created.status, 201) << created;
    std::map<std::string, std::string> tokens = {{"admin", admin_}};
    for (const auto& role : kRoles) {
      if (role == "admin") continue;
      tokens[role] = token(name, role, name + "-" + role);
    }
    return tokens;
  }

  std::string token(const std::string& tenant, const std::string& role,
                    const std::string& subject) {
    Answer made =
        post(admin_, "/v1/tenants/" + tenant + "/tokens", {{"role", role}, {"subject", subject}});
    EXPECT_EQ(made.status, 201) << made;
    return made.body.value("token", "");
  }

  // Publishes and returns the version number (0 if refused).
  int64_t publish(const std::string& publisher, const std::string& tenant,
                  const std::string& script, const std::string& source) {
    Answer published = post(publisher, "/v1/tenants/" + tenant + "/scripts/" + script + "/versions",
                            {{"source", source}, {"manifest", manifest()}});
    EXPECT_TRUE(published.status == 201 || published.status == 200) << published;
    return published.body.value("version", int64_t{0});
  }

  void approve(const std::string& reviewer, const std::string& tenant, const std::string& script,
               int64_t version) {
    Answer approved = post(reviewer, version_path(tenant, script, version) + "/approve");
    EXPECT_EQ(approved.status, 200) << approved;
  }

  void set_alias(const std::string& reviewer, const std::string& tenant, const std::string& script,
                 const std::string& alias, int64_t version) {
    Answer set = put(reviewer, "/v1/tenants/" + tenant + "/scripts/" + script + "/aliases/" + alias,
                     {{"version", version}});
    EXPECT_EQ(set.status, 200) << set;
  }

  static std::string version_path(const std::string& tenant, const std::string& script,
                                  int64_t version) {
    return "/v1/tenants/" + tenant + "/scripts/" + script + "/versions/" + std::to_string(version);
  }

 private:
  std::string host_;
  uint16_t port_;
  std::unique_ptr<HttpClient> http_;
  std::string admin_;
};

}  // namespace corral::testing
