// The policy, secrets and events routes of a real corrald on loopback: documents accepted,
// refused (every problem with its path and line), read back and rolled back; explain for admins
// and auditors; secrets that go in and never come out; the event outbox read with a cursor; and
// corrald refusing to start on an invalid --policy file.
#include <gtest/gtest.h>

#include <fstream>

#include "registry/api_client.h"
#include "store/store.h"

namespace {

using corral::testing::Answer;
using corral::testing::ApiClient;
using corral::testing::CorraldProcess;
using corral::testing::HttpClient;
namespace http = boost::beast::http;
namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kAcmeKv = R"(# acme may use kv; everyone else has only ctx.log
defaults:
  limits:
    fuel: 2000000
tenants:
  acme:
    capabilities:
      kv: {}
)";

constexpr const char* kNoTenants = R"(defaults:
  limits:
    fuel: 3000000
)";

// Two problems: an unknown key (line 3) and a value out of range (line 4).
constexpr const char* kInvalid = R"(defaults:
  limits:
    fule: 5
    timeout_ms: -1
)";

std::string text(const json& value) { return value.is_string() ? value.get<std::string>() : ""; }

class PolicyRoutes : public ::testing::Test {
 protected:
  void SetUp() override {
    api_ = std::make_unique<ApiClient>(corrald_);
    tokens_ = api_->tenant_with_tokens("acme");
    beta_ = api_->tenant_with_tokens("beta");
  }

  // PUT /v1/policy with a YAML body (ApiClient speaks JSON only).
  Answer put_yaml(const std::string& document, const std::string& content_type = "application/yaml",
                  const std::string& token = {}) {
    HttpClient client(corrald_.host(), corrald_.port(), token.empty() ? api_->admin() : token);
    auto response = client.request(http::verb::put, "/v1/policy", document, content_type);
    Answer answer{static_cast<int>(response.result_int()), nullptr, response.body(), response};
    answer.body = json::parse(response.body(), nullptr, false);
    return answer;
  }

  std::vector<json> audit_entries(const std::string& action) {
    Answer audit = api_->get(api_->admin(), "/v1/audit?limit=1000&action=" + action);
    EXPECT_EQ(audit.status, 200) << audit;
    std::vector<json> entries;
    for (const auto& entry : audit.body["entries"]) entries.push_back(entry);
    return entries;
  }

  CorraldProcess corrald_;
  std::unique_ptr<ApiClient> api_;
  std::map<std::string, std::string> tokens_;  // acme's, by role
  std::map<std::string, std::string> beta_;
};

TEST_F(PolicyRoutes, WithoutAPolicyTheSafeDefaultIsVersionZeroAndTheLogSaysSo) {
  Answer current = api_->get(api_->admin(), "/v1/policy");
  ASSERT_EQ(current.status, 200) << current;
  EXPECT_EQ(current.body["version"], 0);
  EXPECT_EQ(current.body["created_by"], "built-in");
  EXPECT_NE(text(current.body["document"]).find("capabilities:"), std::string::npos);
  bool logged = false;
  for (const auto& line : corrald_.log_lines()) {
    if (line.value("msg", "").find("safe default") != std::string::npos) {
      logged = true;
      EXPECT_NE(line.value("hint", "").find("--policy"), std::string::npos) << line;
    }
  }
  EXPECT_TRUE(logged);
  HttpClient client(corrald_.host(), corrald_.port());
  auto health = json::parse(client.request(http::verb::get, "/healthz").body());
  EXPECT_EQ(health["policy_version"], 0) << health;
}

TEST_F(PolicyRoutes, AnAcceptedDocumentIsTheNextVersionAuditedWithItsDiff) {
  Answer put = put_yaml(kAcmeKv);
  ASSERT_EQ(put.status, 201) << put;
  EXPECT_EQ(put.body["version"], 1);
  EXPECT_EQ(put.response[http::field::location], "/v1/policy?version=1");
  std::vector<std::string> diff = put.body["diff"];
  EXPECT_NE(std::find(diff.begin(), diff.end(), "defaults.limits.fuel: 10000000 → 2000000"),
            diff.end())
      << put;

  Answer current = api_->get(api_->admin(), "/v1/policy");
  ASSERT_EQ(current.status, 200) << current;
  EXPECT_EQ(current.body["version"], 1);
  EXPECT_EQ(current.body["document"], kAcmeKv);  // exactly as sent, comments and all
  EXPECT_FALSE(text(current.body["created_by"]).empty());
  EXPECT_TRUE(current.body["created_at"].is_string());

  // The JSON form of the body is accepted too.
  Answer second = api_->put(api_->admin(), "/v1/policy", {{"document", kNoTenants}});
  ASSERT_EQ(second.status, 201) << second;
  EXPECT_EQ(second.body["version"], 2);

  Answer first = api_->get(api_->admin(), "/v1/policy?version=1");
  ASSERT_EQ(first.status, 200) << first;
  EXPECT_EQ(first.body["document"], kAcmeKv);
  Answer built_in = api_->get(api_->admin(), "/v1/policy?version=0");
  EXPECT_EQ(built_in.body["created_by"], "built-in") << built_in;
  Answer missing = api_->get(api_->admin(), "/v1/policy?version=9");
  EXPECT_EQ(missing.status, 404) << missing;
  EXPECT_NE(text(missing.body["hint"]).find("/v1/policy/versions"), std::string::npos) << missing;

  Answer versions = api_->get(api_->admin(), "/v1/policy/versions");
  ASSERT_EQ(versions.status, 200) << versions;
  EXPECT_EQ(versions.body["current"], 2);
  ASSERT_EQ(versions.body["versions"].size(), 2u);
  EXPECT_EQ(versions.body["versions"][0]["version"], 2);

  auto entries = audit_entries("policy.update");
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0]["decision"], "allow");
  EXPECT_NE(text(entries[0]["reason"]).find("defaults.limits.fuel: 10000000 → 2000000"),
            std::string::npos)
      << entries[0];
  EXPECT_NE(text(entries[1]["reason"]).find("tenants.acme: removed"), std::string::npos)
      << entries[1];

  HttpClient client(corrald_.host(), corrald_.port());
  auto health = json::parse(client.request(http::verb::get, "/healthz").body());
  EXPECT_EQ(health["policy_version"], 2) << health;
}

TEST_F(PolicyRoutes, AnInvalidDocumentIsRefusedWithEveryProblemAndChangesNothing) {
  ASSERT_EQ(put_yaml(kAcmeKv).status, 201);
  Answer refused = put_yaml(kInvalid, "text/yaml");
  ASSERT_EQ(refused.status, 400) << refused;
  EXPECT_EQ(refused.response[http::field::content_type], "application/problem+json");
  EXPECT_FALSE(text(refused.body["hint"]).empty());
  EXPECT_EQ(refused.body["policy_version"], 1);
  const json& problems = refused.body["problems"];
  ASSERT_EQ(problems.size(), 2u) << refused;
  EXPECT_EQ(problems[0]["path"], "defaults.limits.fule");
  EXPECT_EQ(problems[0]["line"], 3);
  EXPECT_EQ(problems[0]["column"], 5);
  EXPECT_NE(text(problems[0]["message"]).find("fuel"), std::string::npos) << problems[0];
  EXPECT_EQ(problems[1]["path"], "defaults.limits.timeout_ms");
  EXPECT_EQ(problems[1]["line"], 4);
  EXPECT_NE(text(refused.body["detail"]).find("defaults.limits.fule (line 3, column 5)"),
            std::string::npos)
      << refused;
  EXPECT_EQ(api_->get(api_->admin(), "/v1/policy").body["version"], 1);

  Answer json_refused = api_->put(api_->admin(), "/v1/policy", {{"document", kInvalid}});
  EXPECT_EQ(json_refused.status, 400) << json_refused;
  EXPECT_EQ(json_refused.body["problems"].size(), 2u);
  Answer wrong_member = api_->put(api_->admin(), "/v1/policy", {{"yaml", kAcmeKv}});
  EXPECT_EQ(wrong_member.status, 400) << wrong_member;

  Answer wrong_type = put_yaml(kAcmeKv, "text/plain");
  EXPECT_EQ(wrong_type.status, 415) << wrong_type;
  EXPECT_NE(text(wrong_type.body["hint"]).find("application/yaml"), std::string::npos);
  EXPECT_EQ(api_->get(api_->admin(), "/v1/policy/versions").body["versions"].size(), 1u);
}

TEST_F(PolicyRoutes, RollbackStoresTheEarlierDocumentAsANewVersion) {
  ASSERT_EQ(put_yaml(kAcmeKv).status, 201);
  ASSERT_EQ(put_yaml(kNoTenants).status, 201);
  Answer rolled = api_->post(api_->admin(), "/v1/policy/rollback", {{"version", 1}});
  ASSERT_EQ(rolled.status, 201) << rolled;
  EXPECT_EQ(rolled.body["version"], 3);
  EXPECT_EQ(rolled.body["rolled_back_to"], 1);
  std::vector<std::string> diff = rolled.body["diff"];
  EXPECT_NE(std::find(diff.begin(), diff.end(), "tenants.acme: added"), diff.end()) << rolled;
  Answer current = api_->get(api_->admin(), "/v1/policy");
  EXPECT_EQ(current.body["version"], 3);
  EXPECT_EQ(current.body["document"], kAcmeKv);
  EXPECT_EQ(api_->get(api_->admin(), "/v1/policy?version=2").body["document"], kNoTenants);

  auto entries = audit_entries("policy.rollback");
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_NE(text(entries[0]["reason"]).find("version 1"), std::string::npos) << entries[0];

  Answer unknown = api_->post(api_->admin(), "/v1/policy/rollback", {{"version", 42}});
  EXPECT_EQ(unknown.status, 404) << unknown;
  EXPECT_NE(text(unknown.body["detail"]).find("42"), std::string::npos) << unknown;
  Answer malformed = api_->post(api_->admin(), "/v1/policy/rollback", {{"version", "one"}});
  EXPECT_EQ(malformed.status, 400) << malformed;
  EXPECT_EQ(malformed.body["field"], "version");
  EXPECT_EQ(api_->get(api_->admin(), "/v1/policy").body["version"], 3);
}

TEST_F(PolicyRoutes, ExplainNamesTheRuleForAdminsAndForAnAuditorsOwnTenantOnly) {
  ASSERT_EQ(put_yaml(kAcmeKv).status, 201);
  Answer allowed = api_->get(api_->admin(), "/v1/policy/explain?tenant=acme&action=kv.get");
  ASSERT_EQ(allowed.status, 200) << allowed;
  EXPECT_EQ(allowed.body["allowed"], true);
  EXPECT_EQ(allowed.body["rule"], "tenants.acme.capabilities.kv");
  EXPECT_EQ(allowed.body["policy_version"], 1);
  EXPECT_FALSE(text(allowed.body["reason"]).empty());

  Answer denied = api_->get(api_->admin(), "/v1/policy/explain?tenant=beta&action=kv.put");
  ASSERT_EQ(denied.status, 200) << denied;
  EXPECT_EQ(denied.body["allowed"], false);
  EXPECT_NE(text(denied.body["rule"]).find("kv"), std::string::npos) << denied;
  EXPECT_NE(text(denied.body["rule"]).find("beta"), std::string::npos) << denied;

  // A target after a space (%20) is checked too; the API actions are explained as well.
  Answer fetch = api_->get(api_->admin(),
                           "/v1/policy/explain?tenant=acme&action=http.fetch%20https://x.example/");
  EXPECT_EQ(fetch.status, 200) << fetch;
  EXPECT_EQ(fetch.body["allowed"], false);
  Answer unapproved =
      api_->get(api_->admin(), "/v1/policy/explain?tenant=acme&action=invoke_unapproved");
  EXPECT_EQ(unapproved.body["rule"], "built-in default of governance.approval_required")
      << unapproved;
  EXPECT_EQ(unapproved.body["allowed"], false);

  Answer unknown = api_->get(api_->admin(), "/v1/policy/explain?tenant=acme&action=fly");
  ASSERT_EQ(unknown.status, 400) << unknown;
  EXPECT_EQ(unknown.body["field"], "query.action");
  EXPECT_NE(text(unknown.body["detail"]).find("kv.get"), std::string::npos) << unknown;
  EXPECT_EQ(api_->get(api_->admin(), "/v1/policy/explain?tenant=acme").status, 400);

  // An auditor: its own tenant (named or not), never another one, which looks like no tenant.
  const std::string& auditor = tokens_["auditor"];
  Answer own = api_->get(auditor, "/v1/policy/explain?tenant=acme&action=kv.get");
  ASSERT_EQ(own.status, 200) << own;
  EXPECT_EQ(own.body["allowed"], true);
  Answer implied = api_->get(auditor, "/v1/policy/explain?action=kv.get");
  ASSERT_EQ(implied.status, 200) << implied;
  EXPECT_EQ(implied.body["tenant"], "acme");
  Answer other = api_->get(auditor, "/v1/policy/explain?tenant=beta&action=kv.get");
  Answer nobody = api_->get(auditor, "/v1/policy/explain?tenant=nosuch&action=kv.get");
  ASSERT_EQ(other.status, 404) << other;
  ASSERT_EQ(nobody.status, 404) << nobody;
  EXPECT_EQ(other.body["title"], nobody.body["title"]);
  EXPECT_EQ(other.body["hint"], nobody.body["hint"]);
  bool audited = false;
  for (const auto& entry : audit_entries("policy.explain")) {
    if (entry["decision"] == "deny" && text(entry["reason"]).find("beta") != std::string::npos)
      audited = true;
  }
  EXPECT_TRUE(audited);

  // Other roles may not ask at all.
  Answer publisher = api_->get(tokens_["publisher"], "/v1/policy/explain?action=kv.get");
  EXPECT_EQ(publisher.status, 403) << publisher;
}

TEST_F(PolicyRoutes, OnlyAdminsReadOrChangeThePolicy) {
  for (const auto& role : {"publisher", "reviewer", "invoker", "auditor"}) {
    const std::string& token = tokens_[role];
    EXPECT_EQ(api_->get(token, "/v1/policy").status, 403) << role;
    EXPECT_EQ(api_->get(token, "/v1/policy/versions").status, 403) << role;
    EXPECT_EQ(put_yaml(kAcmeKv, "application/yaml", token).status, 403) << role;
    EXPECT_EQ(api_->post(token, "/v1/policy/rollback", {{"version", 0}}).status, 403) << role;
  }
  EXPECT_EQ(api_->get("", "/v1/policy").status, 401);
  EXPECT_EQ(api_->get(api_->admin(), "/v1/policy/versions").body["versions"].size(), 0u);
}

TEST_F(PolicyRoutes, SecretsGoInAndNeverComeOut) {
  const std::string value = "s3cr3t-Value-that-must-not-leak-7f3a";
  const std::string path = "/v1/tenants/acme/secrets/api_key";
  Answer created = api_->put(api_->admin(), path, {{"value", value}});
  ASSERT_EQ(created.status, 201) << created;
  EXPECT_EQ(created.body["created"], true);
  EXPECT_EQ(created.raw.find(value), std::string::npos);
  Answer replaced = api_->put(api_->admin(), path, {{"value", value + "-2"}});
  ASSERT_EQ(replaced.status, 200) << replaced;
  EXPECT_EQ(replaced.body["created"], false);
  ASSERT_EQ(api_->put(api_->admin(), "/v1/tenants/acme/secrets/other", {{"value", "x"}}).status,
            201);

  Answer listed = api_->get(api_->admin(), "/v1/tenants/acme/secrets");
  ASSERT_EQ(listed.status, 200) << listed;
  ASSERT_EQ(listed.body["secrets"].size(), 2u) << listed;
  EXPECT_EQ(listed.body["secrets"][0]["name"], "api_key");
  EXPECT_TRUE(listed.body["secrets"][0]["updated_at"].is_string());
  EXPECT_EQ(listed.body["secrets"][0].size(), 2u) << listed;  // name and updated_at only
  EXPECT_EQ(listed.raw.find(value), std::string::npos);
  EXPECT_EQ(api_->get(api_->admin(), "/v1/tenants/beta/secrets").body["secrets"].size(), 0u);

  // Only admins; another tenant's token sees no tenant at all.
  for (const auto& role : {"publisher", "reviewer", "invoker", "auditor"}) {
    EXPECT_EQ(api_->put(tokens_[role], path, {{"value", "x"}}).status, 403) << role;
    EXPECT_EQ(api_->get(tokens_[role], "/v1/tenants/acme/secrets").status, 403) << role;
    EXPECT_EQ(api_->del(tokens_[role], path).status, 403) << role;
    EXPECT_EQ(api_->get(beta_[role], "/v1/tenants/acme/secrets").status, 404) << role;
  }

  // Bad input says what is wrong.
  Answer bad_name =
      api_->put(api_->admin(), "/v1/tenants/acme/secrets/bad%20name", {{"value", "x"}});
  EXPECT_EQ(bad_name.status, 400) << bad_name;
  EXPECT_EQ(bad_name.body["field"], "name");
  Answer empty = api_->put(api_->admin(), path, {{"value", ""}});
  EXPECT_EQ(empty.status, 400) << empty;
  EXPECT_EQ(empty.body["field"], "value");
  Answer not_string = api_->put(api_->admin(), path, {{"value", 5}});
  EXPECT_EQ(not_string.status, 400) << not_string;

  // Audited by name, never by value.
  auto entries = audit_entries("secret.put");
  ASSERT_GE(entries.size(), 3u);
  EXPECT_NE(text(entries[0]["reason"]).find("api_key"), std::string::npos) << entries[0];
  Answer all = api_->get(api_->admin(), "/v1/audit?limit=1000");
  EXPECT_EQ(all.raw.find(value), std::string::npos);

  // Sealed at rest: the database holds no plaintext value, and the log never had one.
  std::string database = corral::testing::read_text(corrald_.data_dir() / "corral.db") +
                         corral::testing::read_text(corrald_.data_dir() / "corral.db-wal");
  EXPECT_NE(database.find("api_key"), std::string::npos);  // the name is there: we read the file
  EXPECT_EQ(database.find(value), std::string::npos);
  EXPECT_EQ(corral::testing::read_text(corrald_.log_path()).find(value), std::string::npos);

  Answer deleted = api_->del(api_->admin(), path);
  ASSERT_EQ(deleted.status, 200) << deleted;
  EXPECT_EQ(deleted.body["deleted"], true);
  Answer again = api_->del(api_->admin(), path);
  EXPECT_EQ(again.status, 404) << again;
  EXPECT_NE(text(again.body["hint"]).find("/v1/tenants/acme/secrets"), std::string::npos);
  EXPECT_EQ(api_->get(api_->admin(), "/v1/tenants/acme/secrets").body["secrets"].size(), 1u);
  auto deletions = audit_entries("secret.delete");  // the four refused roles' denials, then this
  ASSERT_FALSE(deletions.empty());
  EXPECT_EQ(deletions.back()["decision"], "allow");
  EXPECT_EQ(std::count_if(deletions.begin(), deletions.end(),
                          [](const json& entry) { return entry["decision"] == "allow"; }),
            1);
}

TEST_F(PolicyRoutes, EventsAreReadInOrderFromACursor) {
  {
    // Appended the way ctx.emit does, straight into corrald's store (SQLite allows a second
    // process).
    auto store = corral::store::open_sqlite_store(corrald_.data_dir());
    auto acme = store->find_tenant_by_name("acme");
    auto beta = store->find_tenant_by_name("beta");
    ASSERT_TRUE(acme && beta);
    for (int i = 1; i <= 5; ++i) {
      store->append_event(acme->id, "orders.created", json({{"n", i}}).dump(), 1000 + i);
    }
    store->append_event(beta->id, "beta.only", "{}", 2000);
  }
  const std::string& invoker = tokens_["invoker"];
  std::vector<int> seen;
  int64_t cursor = 0;
  for (int page = 0; page < 4; ++page) {
    Answer events =
        api_->get(invoker, "/v1/tenants/acme/events?limit=2&after=" + std::to_string(cursor));
    ASSERT_EQ(events.status, 200) << events;
    for (const auto& event : events.body["events"]) {
      EXPECT_EQ(event["topic"], "orders.created");
      EXPECT_TRUE(event["created_at"].is_string());
      EXPECT_EQ(event["seq"], event["payload"]["n"]);  // payload is JSON, not a string
      seen.push_back(event["payload"]["n"]);
    }
    EXPECT_LE(events.body["events"].size(), 2u);
    cursor = events.body["next_after"];
  }
  EXPECT_EQ(seen, (std::vector<int>{1, 2, 3, 4, 5}));
  EXPECT_EQ(cursor, 5);  // nothing new: the cursor stays where it was
  // Reading is not consuming: the same cursor gives the same events again (at-least-once).
  Answer again = api_->get(invoker, "/v1/tenants/acme/events?after=3");
  ASSERT_EQ(again.body["events"].size(), 2u) << again;
  EXPECT_EQ(again.body["events"][0]["seq"], 4);

  EXPECT_EQ(api_->get(api_->admin(), "/v1/tenants/acme/events").body["events"].size(), 5u);
  EXPECT_EQ(api_->get(tokens_["publisher"], "/v1/tenants/acme/events").status, 200);
  EXPECT_EQ(api_->get(tokens_["auditor"], "/v1/tenants/acme/events").status, 200);
  EXPECT_EQ(api_->get(tokens_["reviewer"], "/v1/tenants/acme/events").status, 403);
  EXPECT_EQ(api_->get(invoker, "/v1/tenants/beta/events").status, 404);
  Answer beta = api_->get(beta_["invoker"], "/v1/tenants/beta/events");
  ASSERT_EQ(beta.body["events"].size(), 1u) << beta;
  EXPECT_EQ(beta.body["events"][0]["seq"], 1);  // numbered per tenant
  Answer bad = api_->get(invoker, "/v1/tenants/acme/events?limit=0");
  EXPECT_EQ(bad.status, 400) << bad;
  EXPECT_EQ(bad.body["field"], "query.limit");
}

// --policy FILE at start-up: an invalid file keeps corrald from starting, naming file:line:column
// for every problem; a valid one becomes version 1, and starting again with the same file stores
// nothing new.
TEST(PolicyStartUp, AnInvalidPolicyFileKeepsCorraldFromStarting) {
  fs::path dir = fs::temp_directory_path() / ("corrald-policy-start-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::path invalid = dir / "invalid.yaml";
  std::ofstream(invalid) << kInvalid;
  try {
    CorraldProcess refused({"--policy", invalid.string()}, dir);
    ADD_FAILURE() << "corrald started with an invalid policy";
  } catch (const std::runtime_error& error) {
    std::string message = error.what();
    EXPECT_NE(message.find(invalid.string() + ":3:5: defaults.limits.fule"), std::string::npos)
        << message;
    EXPECT_NE(message.find(invalid.string() + ":4:"), std::string::npos) << message;
  }

  fs::path valid = dir / "policy.yaml";
  std::ofstream(valid) << kAcmeKv;
  for (int start = 0; start < 2; ++start) {
    CorraldProcess corrald({"--policy", valid.string()}, dir);
    ApiClient api(corrald);
    Answer current = api.get(api.admin(), "/v1/policy");
    ASSERT_EQ(current.status, 200) << current;
    EXPECT_EQ(current.body["version"], 1) << "start " << start;
    EXPECT_EQ(current.body["created_by"], "bootstrap");
    EXPECT_EQ(current.body["document"], kAcmeKv);
    EXPECT_EQ(api.get(api.admin(), "/v1/policy/versions").body["versions"].size(), 1u);
    EXPECT_EQ(corrald.terminate_and_wait(), 0);
  }
  fs::remove_all(dir);
}

}  // namespace
