// The operator's commands of the corral CLI against a real corrald: listing tokens (never their
// secrets) and reading, replacing, rolling back and explaining the policy.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "cli/api_cli_fixture.h"

namespace {

using nlohmann::json;
using namespace corral::testing::cli;

// A token made with --json: its id and its secret.
struct MadeToken {
  std::string id;
  std::string secret;
};

class AdminCli : public ApiCliWithCorrald {
 protected:
  MadeToken made(const std::vector<std::string>& arguments) {
    std::vector<std::string> all = {"--json", "token", "create"};
    all.insert(all.end(), arguments.begin(), arguments.end());
    CliRun run = as(admin_, all);
    EXPECT_EQ(run.status, 0) << run;
    json answer = json::parse(run.out, nullptr, false);
    return {answer.value("id", ""), answer.value("token", "")};
  }
};

TEST_F(AdminCli, TokenListShowsSubjectsRolesExpiryAndLastUseButNeverASecret) {
  ASSERT_EQ(as(admin_, {"tenant", "create", "acme"}).status, 0);
  MadeToken alice = made({"--tenant", "acme", "--role", "publisher", "--subject", "alice"});
  MadeToken billing = made({"--tenant", "acme", "--role", "invoker", "--subject", "billing-service",
                            "--expires-in-s", "86400"});
  MadeToken gone = made({"--tenant", "acme", "--role", "reviewer", "--subject", "bob"});
  ASSERT_EQ(as(admin_, {"token", "revoke", "--tenant", "acme", gone.id}).status, 0);
  // Alice's token is used once; the others never.
  CliRun used = as(alice.secret, {"scripts", "--tenant", "acme"});
  ASSERT_EQ(used.status, 0) << used;

  CliRun table = as(admin_, {"token", "list", "--tenant", "acme"});
  ASSERT_EQ(table.status, 0) << table;
  EXPECT_TRUE(has(table.out, "LAST USED")) << table;
  // Split on spaces: a time is two cells ("2026-12-07 16:41:01Z").
  std::vector<std::string> alice_row = row(table.out, alice.id);
  ASSERT_EQ(alice_row.size(), 9u) << table;
  EXPECT_EQ(alice_row[1], "alice") << table;
  EXPECT_EQ(alice_row[2], "publisher") << table;
  EXPECT_EQ(alice_row[5], "never") << table;          // EXPIRES
  EXPECT_TRUE(alice_row[7].ends_with("Z")) << table;  // LAST USED: a time
  EXPECT_EQ(alice_row[8], "active") << table;
  std::vector<std::string> billing_row = row(table.out, billing.id);
  ASSERT_GE(billing_row.size(), 7u) << table;
  EXPECT_EQ(billing_row[1], "billing-service") << table;
  EXPECT_EQ(billing_row.back(), "active") << table;
  EXPECT_EQ(billing_row[billing_row.size() - 2], "never") << table;  // never used
  EXPECT_TRUE(has(row(table.out, gone.id).back(), "Z")) << table;    // "revoked <date>"
  EXPECT_TRUE(has(table.out, "revoked")) << table;

  CliRun listed = as(admin_, {"--json", "token", "list", "--tenant", "acme"});
  ASSERT_EQ(listed.status, 0) << listed;
  json answer = json::parse(listed.out, nullptr, false);
  ASSERT_TRUE(answer.is_object()) << listed;
  EXPECT_EQ(answer["tenant"], "acme");
  ASSERT_EQ(answer["tokens"].size(), 3u) << listed;
  for (const auto& token : answer["tokens"]) {
    EXPECT_FALSE(token.contains("token")) << token;
    EXPECT_FALSE(token.contains("secret_hash")) << token;
    for (const char* member :
         {"id", "subject", "role", "created_at", "expires_at", "last_used_at", "revoked_at"})
      EXPECT_TRUE(token.contains(member)) << member << " missing from " << token;
  }
  EXPECT_EQ(answer["tokens"][0]["id"], alice.id);
  EXPECT_TRUE(answer["tokens"][0]["last_used_at"].is_string()) << listed;
  EXPECT_TRUE(answer["tokens"][1]["last_used_at"].is_null()) << listed;
  EXPECT_TRUE(answer["tokens"][1]["expires_at"].is_string()) << listed;
  EXPECT_TRUE(answer["tokens"][2]["revoked_at"].is_string()) << listed;
  for (const std::string& secret : {alice.secret, billing.secret, gone.secret}) {
    EXPECT_FALSE(has(listed.out, secret));
    EXPECT_FALSE(has(table.out, secret));
  }

  // Without --tenant: the admin tokens, the first one used by every command above.
  CliRun admins = as(admin_, {"--json", "token", "list"});
  ASSERT_EQ(admins.status, 0) << admins;
  json admin_tokens = json::parse(admins.out, nullptr, false)["tokens"];
  ASSERT_EQ(admin_tokens.size(), 1u) << admins;
  EXPECT_EQ(admin_tokens[0]["role"], "admin");
  EXPECT_TRUE(admin_tokens[0]["last_used_at"].is_string()) << admins;
  EXPECT_FALSE(has(admins.out, admin_));

  // Only admins list tokens; another tenant's name is no tenant.
  CliRun refused = as(alice.secret, {"token", "list", "--tenant", "acme"});
  EXPECT_EQ(refused.status, 22) << refused;
  EXPECT_TRUE(has(refused.err, "HTTP 403")) << refused;
  CliRun missing = as(admin_, {"token", "list", "--tenant", "nobody"});
  EXPECT_EQ(missing.status, 23) << missing;
  EXPECT_TRUE(has(missing.err, "HTTP 404")) << missing;
}

const char* kAcmeKv =
    "tenants:\n"
    "  acme:\n"
    "    capabilities:\n"
    "      kv: {}\n";

TEST_F(AdminCli, PolicyShowPutVersionsRollbackAndExplain) {
  // The built-in default is in force: version 0, its document on stdout, which one on stderr.
  CliRun initial = as(admin_, {"policy", "show"});
  ASSERT_EQ(initial.status, 0) << initial;
  EXPECT_TRUE(has(initial.err, "policy version 0, by built-in")) << initial;

  // An invalid document: every problem where it is in the file, exit 20 (bad request), nothing
  // stored.
  auto bad = write("bad.yaml",
                   "defaults:\n"
                   "  limits:\n"
                   "    fuel: many\n");
  CliRun refused = as(admin_, {"policy", "put", bad});
  EXPECT_EQ(refused.status, 20) << refused;
  EXPECT_TRUE(has(refused.err, bad + ":3:")) << refused;
  EXPECT_TRUE(has(refused.err, "defaults.limits.fuel")) << refused;
  EXPECT_TRUE(has(refused.err, "HTTP 400")) << refused;

  auto good = write("policy.yaml", kAcmeKv);
  CliRun put = as(admin_, {"policy", "put", good});
  ASSERT_EQ(put.status, 0) << put;
  EXPECT_TRUE(has(put.out, "policy version 1 is in force")) << put;
  EXPECT_TRUE(has(put.out, "acme")) << put;  // the diff

  CliRun shown = as(admin_, {"policy", "show"});
  ASSERT_EQ(shown.status, 0) << shown;
  EXPECT_EQ(shown.out, kAcmeKv) << shown;
  EXPECT_TRUE(has(shown.err, "policy version 1")) << shown;

  CliRun allowed = as(admin_, {"policy", "explain", "--tenant", "acme", "kv.get"});
  ASSERT_EQ(allowed.status, 0) << allowed;
  EXPECT_TRUE(allowed.out.starts_with("allowed: kv.get for tenant acme")) << allowed;
  EXPECT_TRUE(has(allowed.out, "rule: tenants.acme.capabilities.kv")) << allowed;
  // An action with a target, given as two words; denied answers exit 0 too.
  CliRun fetch =
      as(admin_, {"policy", "explain", "--tenant", "acme", "http.fetch", "https://x.example/"});
  ASSERT_EQ(fetch.status, 0) << fetch;
  EXPECT_TRUE(fetch.out.starts_with("denied: http.fetch https://x.example/")) << fetch;
  CliRun unknown = as(admin_, {"policy", "explain", "--tenant", "acme", "fly"});
  EXPECT_EQ(unknown.status, 20) << unknown;
  EXPECT_TRUE(has(unknown.err, "kv.get")) << unknown;  // the known actions are listed

  CliRun back = as(admin_, {"policy", "rollback", "0"});
  ASSERT_EQ(back.status, 0) << back;
  EXPECT_TRUE(has(back.out, "policy version 2 is in force (the document of version 0)")) << back;
  CliRun denied = as(admin_, {"--json", "policy", "explain", "--tenant", "acme", "kv.get"});
  ASSERT_EQ(denied.status, 0) << denied;
  EXPECT_EQ(json::parse(denied.out, nullptr, false)["allowed"], false) << denied;

  CliRun old = as(admin_, {"policy", "show", "--version", "1"});
  ASSERT_EQ(old.status, 0) << old;
  EXPECT_EQ(old.out, kAcmeKv) << old;
  CliRun none = as(admin_, {"policy", "show", "--version", "9"});
  EXPECT_EQ(none.status, 23) << none;
  EXPECT_TRUE(has(none.err, "HTTP 404")) << none;

  CliRun versions = as(admin_, {"policy", "versions"});
  ASSERT_EQ(versions.status, 0) << versions;
  EXPECT_EQ(row(versions.out, "2").at(1), "yes") << versions;
  EXPECT_FALSE(row(versions.out, "1").empty()) << versions;
  CliRun versions_json = as(admin_, {"policy", "versions", "--json"});
  ASSERT_EQ(versions_json.status, 0) << versions_json;
  EXPECT_EQ(json::parse(versions_json.out, nullptr, false)["current"], 2) << versions_json;

  // Admins only: a tenant's publisher is refused (22, forbidden), and the policy stays.
  ASSERT_EQ(as(admin_, {"tenant", "create", "acme"}).status, 0);
  std::string publisher = make_token("acme", "publisher", "alice");
  CliRun forbidden = as(publisher, {"policy", "put", good});
  EXPECT_EQ(forbidden.status, 22) << forbidden;
  EXPECT_TRUE(has(forbidden.err, "HTTP 403")) << forbidden;
}

// A script that emits one event per run and fails when asked to.
const char* kOrders =
    "function handle(input, ctx)\n"
    "  if input.fail then error('no such order') end\n"
    "  ctx.emit('orders.seen', {n = input.n})\n"
    "  print('seen ' .. input.n)\n"
    "  return {seen = input.n}\n"
    "end\n";

TEST_F(AdminCli, JobsSubmitWaitShowListCancelAndEventsTail) {
  ASSERT_EQ(as(admin_, {"tenant", "create", "acme"}).status, 0);
  auto policy = write("policy.yaml",
                      "tenants:\n"
                      "  acme:\n"
                      "    capabilities:\n"
                      "      emit: {topics: [\"orders.*\"]}\n");
  ASSERT_EQ(as(admin_, {"policy", "put", policy}).status, 0);
  std::string publisher = make_token("acme", "publisher", "alice");
  std::string reviewer = make_token("acme", "reviewer", "bob");
  std::string invoker = make_token("acme", "invoker", "billing-service");
  auto file = write("orders.lua", kOrders);
  CliRun published = as(publisher, {"publish", file, "--tenant", "acme", "--script", "orders",
                                    "--capability", "log,emit"});
  ASSERT_EQ(published.status, 0) << published;
  ASSERT_EQ(as(reviewer, {"approve", "--tenant", "acme", "--script", "orders", "1"}).status, 0);
  ASSERT_EQ(
      as(reviewer, {"alias", "set", "--tenant", "acme", "--script", "orders", "live", "1"}).status,
      0);
  std::vector<std::string> where = {"--tenant", "acme", "--script", "orders"};
  auto with = [&](std::vector<std::string> command, const std::vector<std::string>& more) {
    command.insert(command.end(), where.begin(), where.end());
    command.insert(command.end(), more.begin(), more.end());
    return command;
  };

  // Submit: the id alone on stdout; wait: the output as invoke prints it, logs on stderr.
  CliRun submitted =
      as(invoker, with({"jobs", "submit"}, {"--input", R"({"n": 1})", "--idempotency-key", "k1"}));
  ASSERT_EQ(submitted.status, 0) << submitted;
  ASSERT_TRUE(std::regex_match(submitted.out, std::regex("[0-9a-f-]+\n"))) << submitted;
  std::string job = submitted.out.substr(0, submitted.out.size() - 1);
  EXPECT_TRUE(has(submitted.err, "version 1")) << submitted;
  CliRun waited = as(invoker, with({"jobs", "wait"}, {job}));
  ASSERT_EQ(waited.status, 0) << waited;
  EXPECT_EQ(json::parse(waited.out, nullptr, false), json({{"seen", 1}})) << waited;
  EXPECT_TRUE(has(waited.err, "[info] seen 1")) << waited;
  // The same key and request: the same job.
  CliRun again =
      as(invoker, with({"jobs", "submit"}, {"--input", R"({"n": 1})", "--idempotency-key", "k1"}));
  ASSERT_EQ(again.status, 0) << again;
  EXPECT_EQ(again.out, submitted.out) << again;

  CliRun shown = as(invoker, with({"jobs", "show"}, {job}));
  ASSERT_EQ(shown.status, 0) << shown;
  EXPECT_TRUE(has(shown.out, "state: succeeded")) << shown;
  EXPECT_TRUE(has(shown.out, "outcome: ok")) << shown;
  CliRun shown_json = as(invoker, with({"--json", "jobs", "show"}, {job}));
  ASSERT_EQ(shown_json.status, 0) << shown_json;
  EXPECT_EQ(json::parse(shown_json.out, nullptr, false)["id"], job) << shown_json;

  // A run that fails: wait exits as invoke does for script_error (1) and says why.
  CliRun failing = as(invoker, with({"jobs", "submit"}, {"--input", R"({"fail": true})"}));
  ASSERT_EQ(failing.status, 0) << failing;
  std::string failed_job = failing.out.substr(0, failing.out.size() - 1);
  CliRun failed = as(invoker, with({"jobs", "wait"}, {failed_job}));
  EXPECT_EQ(failed.status, 1) << failed;
  EXPECT_TRUE(has(failed.err, "script_error")) << failed;
  EXPECT_TRUE(has(failed.err, "no such order")) << failed;
  EXPECT_EQ(failed.out, "") << failed;

  CliRun listed = as(invoker, with({"jobs", "list"}, {}));
  ASSERT_EQ(listed.status, 0) << listed;
  EXPECT_EQ(row(listed.out, job).at(1), "succeeded") << listed;
  EXPECT_EQ(row(listed.out, failed_job).at(1), "failed") << listed;
  // A page at a time: the first says which --before continues, and the second holds the other.
  CliRun first_page = as(invoker, with({"jobs", "list"}, {"--limit", "1"}));
  ASSERT_EQ(first_page.status, 0) << first_page;
  std::smatch next;
  ASSERT_TRUE(std::regex_search(first_page.err, next, std::regex("add --before (\\S+)")))
      << first_page;
  CliRun second_page = as(invoker, with({"jobs", "list"}, {"--limit", "1", "--before", next[1]}));
  ASSERT_EQ(second_page.status, 0) << second_page;
  std::set<std::string> paged;
  for (const std::string& id : {job, failed_job})
    if (!row(first_page.out, id).empty() || !row(second_page.out, id).empty()) paged.insert(id);
  EXPECT_EQ(paged, (std::set<std::string>{job, failed_job})) << first_page << second_page;

  // A job that has ended cannot be cancelled: the server's 409, exit 25 (conflict).
  CliRun cancel = as(invoker, with({"jobs", "cancel"}, {job}));
  EXPECT_EQ(cancel.status, 25) << cancel;
  EXPECT_TRUE(has(cancel.err, "HTTP 409")) << cancel;
  CliRun unknown = as(invoker, with({"jobs", "wait"}, {"no-such-job"}));
  EXPECT_EQ(unknown.status, 23) << unknown;
  EXPECT_TRUE(has(unknown.err, "HTTP 404")) << unknown;

  // The one event the succeeded job emitted; --after past it prints none.
  CliRun tail = as(invoker, {"events", "tail", "--tenant", "acme"});
  ASSERT_EQ(tail.status, 0) << tail;
  std::vector<std::string> event = row(tail.out, "1");
  ASSERT_FALSE(event.empty()) << tail;
  EXPECT_TRUE(has(tail.out, "orders.seen")) << tail;
  EXPECT_TRUE(has(tail.out, R"({"n":1})")) << tail;
  EXPECT_TRUE(has(tail.err, "--after 1")) << tail;
  CliRun tail_json = as(invoker, {"--json", "events", "tail", "--tenant", "acme"});
  ASSERT_EQ(tail_json.status, 0) << tail_json;
  json first = json::parse(tail_json.out, nullptr, false);
  EXPECT_EQ(first["seq"], 1) << tail_json;
  EXPECT_EQ(first["topic"], "orders.seen") << tail_json;
  CliRun none = as(invoker, {"events", "tail", "--tenant", "acme", "--after", "1"});
  ASSERT_EQ(none.status, 0) << none;
  EXPECT_EQ(none.out, "") << none;
  // A reviewer may not read the outbox.
  CliRun refused = as(reviewer, {"events", "tail", "--tenant", "acme"});
  EXPECT_EQ(refused.status, 22) << refused;
  EXPECT_TRUE(has(refused.err, "HTTP 403")) << refused;
}

TEST_F(ApiCliTest, PolicyCommandsHaveHelpAndUsageErrorsExit2) {
  for (const char* verb : {"show", "put", "versions", "rollback", "explain"}) {
    CliRun help = corral({"policy", verb, "--help"});
    EXPECT_EQ(help.status, 0) << verb << ": " << help;
    EXPECT_TRUE(has(help.out, "policy " + std::string(verb))) << help;
  }
  for (std::vector<std::string> help : std::vector<std::vector<std::string>>{{"jobs", "submit"},
                                                                             {"jobs", "show"},
                                                                             {"jobs", "list"},
                                                                             {"jobs", "wait"},
                                                                             {"jobs", "cancel"},
                                                                             {"events", "tail"}}) {
    help.push_back("--help");
    CliRun run = corral(help);
    EXPECT_EQ(run.status, 0) << help[0] << " " << help[1] << ": " << run;
    EXPECT_TRUE(has(run.out, help[0] + " " + help[1])) << run;
  }
  CliRun list_help = corral({"token", "list", "--help"});
  EXPECT_EQ(list_help.status, 0) << list_help;
  EXPECT_TRUE(has(list_help.out, "never the secrets")) << list_help;
  // Nothing is sent for these: the server named does not exist.
  std::vector<std::string> unreachable = {"--server", "http://127.0.0.1:1"};
  for (std::vector<std::string> usage : std::vector<std::vector<std::string>>{
           {"policy"},
           {"policy", "put"},
           {"policy", "explain"},
           {"policy", "rollback", "-1"},
           {"jobs"},
           {"jobs", "wait", "--tenant", "acme", "--script", "s"},
           {"jobs", "submit", "--tenant", "acme", "--script", "s", "--input", "{not json"},
           {"events", "tail"}}) {
    usage.insert(usage.begin(), unreachable.begin(), unreachable.end());
    CliRun run = corral(usage);
    EXPECT_EQ(run.status, 2) << usage.back() << ": " << run;
  }
  CliRun missing_file =
      corral({"--server", "http://127.0.0.1:1", "policy", "put", (dir_ / "nope.yaml").string()});
  EXPECT_EQ(missing_file.status, 2) << missing_file;
  EXPECT_TRUE(has(missing_file.err, "nope.yaml")) << missing_file;
}

}  // namespace
