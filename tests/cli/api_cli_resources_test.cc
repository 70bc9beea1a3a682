// The rest of the API through the corral CLI against a real corrald: secrets, stored runs and
// replay, deprecating and disabling versions, canaries, webhook secrets and deliveries; one exit
// status per kind of answer; and listings that name people (token subjects), not token ids.
#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "cli/api_cli_fixture.h"
#include "jobs/webhook_receiver.h"

namespace {

using nlohmann::json;
using namespace corral::testing::cli;

const char* kHello =
    "function handle(input, ctx)\n"
    "  if input.fail then error('no such order') end\n"
    "  return {greeting = 'hello ' .. input.name}\n"
    "end\n";

const char* kHi =
    "function handle(input, ctx)\n"
    "  return {greeting = 'hi ' .. input.name}\n"
    "end\n";

const std::regex kTokenId("[0-9a-f]{32}");

class ResourcesCli : public ApiCliWithCorrald {
 protected:
  std::vector<std::string> where(std::vector<std::string> command,
                                 const std::vector<std::string>& more = {}) {
    command.insert(command.end(), {"--tenant", "acme", "--script", "greeter"});
    command.insert(command.end(), more.begin(), more.end());
    return command;
  }

  // Version 2 of acme/greeter (kHi), published and approved; live stays on 1.
  void second_version(const std::string& publisher, const std::string& reviewer) {
    CliRun published = as(publisher, where({"publish", write("hi.lua", kHi)}));
    ASSERT_EQ(published.status, 0) << published;
    CliRun approved = as(reviewer, where({"approve"}, {"2"}));
    ASSERT_EQ(approved.status, 0) << approved;
  }
};

TEST_F(ResourcesCli, SecretsArePutListedAndDeletedAndTheirValuesNeverShown) {
  ASSERT_EQ(as(admin_, {"tenant", "create", "acme"}).status, 0);
  const std::string value = "sk_live_very_secret_value";
  auto file = write("stripe.txt", value + "\n");
  CliRun put = as(admin_, {"secret", "put", "--tenant", "acme", "stripe", "--value-file", file});
  ASSERT_EQ(put.status, 0) << put;
  EXPECT_EQ(put.out,
            "created secret stripe of tenant acme (" + std::to_string(value.size()) + " bytes)\n")
      << put;
  CliRun replaced =
      as(admin_, {"secret", "put", "--tenant", "acme", "stripe", "--value-file", file});
  ASSERT_EQ(replaced.status, 0) << replaced;
  EXPECT_TRUE(replaced.out.starts_with("replaced secret stripe")) << replaced;

  CliRun listed = as(admin_, {"secret", "list", "--tenant", "acme"});
  ASSERT_EQ(listed.status, 0) << listed;
  EXPECT_TRUE(listed.out.starts_with("NAME")) << listed;
  EXPECT_EQ(row(listed.out, "stripe").size(), 3u) << listed;  // name, date, time
  CliRun listed_json = as(admin_, {"--json", "secret", "list", "--tenant", "acme"});
  ASSERT_EQ(listed_json.status, 0) << listed_json;
  EXPECT_EQ(json::parse(listed_json.out)["secrets"][0]["name"], "stripe") << listed_json;
  for (const CliRun& run : {put, replaced, listed, listed_json})
    EXPECT_FALSE(has(run.out + run.err, value)) << run;

  // The value never comes from the command line; an empty one (stdin is empty here) is refused
  // before anything is sent.
  CliRun empty = as(admin_, {"secret", "put", "--tenant", "acme", "other", "--value-file", "-"});
  EXPECT_EQ(empty.status, 2) << empty;
  EXPECT_TRUE(has(empty.err, "empty")) << empty;

  std::string publisher = make_token("acme", "publisher", "alice");
  CliRun not_admin = as(publisher, {"secret", "list", "--tenant", "acme"});
  EXPECT_EQ(not_admin.status, 22) << not_admin;

  CliRun deleted = as(admin_, {"secret", "delete", "--tenant", "acme", "stripe"});
  ASSERT_EQ(deleted.status, 0) << deleted;
  EXPECT_EQ(deleted.out, "deleted secret stripe of tenant acme\n") << deleted;
  CliRun again = as(admin_, {"secret", "delete", "--tenant", "acme", "stripe"});
  EXPECT_EQ(again.status, 23) << again;
  EXPECT_TRUE(has(again.err, "HTTP 404")) << again;
}

TEST_F(ResourcesCli, StoredRunsAreListedShownAndReplayedOnAnotherVersion) {
  auto policy = write("policy.yaml",
                      "tenants:\n"
                      "  acme:\n"
                      "    runs: {inputs: true}\n");
  CliRun put = as(admin_, {"policy", "put", policy});
  ASSERT_EQ(put.status, 0) << put;
  auto [publisher, reviewer] = live_script("acme", "greeter", kHello);
  CliRun invoked = as(publisher, where({"invoke"}, {"--input", R"({"name": "ada"})"}));
  ASSERT_EQ(invoked.status, 0) << invoked;

  CliRun listed_json = as(publisher, where({"--json", "runs", "list"}));
  ASSERT_EQ(listed_json.status, 0) << listed_json;
  json runs = json::parse(listed_json.out)["runs"];
  ASSERT_EQ(runs.size(), 1u) << listed_json;
  std::string id = runs[0]["id"];
  CliRun listed = as(publisher, where({"runs", "list"}));
  ASSERT_EQ(listed.status, 0) << listed;
  std::vector<std::string> cells = row(listed.out, id);
  ASSERT_EQ(cells.size(), 6u) << listed;  // id, date, time, version, outcome, input stored
  EXPECT_EQ(cells[3], "1");
  EXPECT_EQ(cells[4], "ok");
  EXPECT_EQ(cells[5], "yes");

  CliRun shown = as(publisher, where({"runs", "show"}, {id}));
  ASSERT_EQ(shown.status, 0) << shown;
  EXPECT_TRUE(has(shown.out, "outcome: ok\n")) << shown;
  EXPECT_TRUE(has(shown.out, R"(input: {"name":"ada"})")) << shown;
  EXPECT_TRUE(has(shown.out, R"(output: {"greeting":"hello ada"})")) << shown;

  // Replayed on version 2: its output, and on stderr that the output differs.
  second_version(publisher, reviewer);
  CliRun replayed = as(publisher, where({"runs", "replay"}, {id, "--version", "2"}));
  ASSERT_EQ(replayed.status, 0) << replayed;
  EXPECT_EQ(replayed.out, "{\"greeting\":\"hi ada\"}\n") << replayed;
  EXPECT_TRUE(has(replayed.err, "same outcome, DIFFERENT output")) << replayed;
  CliRun same = as(reviewer, where({"--json", "runs", "replay"}, {id, "--version", "1"}));
  ASSERT_EQ(same.status, 0) << same;
  EXPECT_EQ(json::parse(same.out)["replay_of"]["same_output"], true) << same;

  CliRun unknown = as(publisher, where({"runs", "show"}, {"no-such-run"}));
  EXPECT_EQ(unknown.status, 23) << unknown;
  CliRun invoker_may_not = as(make_token("acme", "invoker", "billing"), where({"runs", "list"}));
  EXPECT_EQ(invoker_may_not.status, 22) << invoker_may_not;
}

TEST_F(ResourcesCli, VersionsAreShownDeprecatedDisabledAndCanariesSetAndCleared) {
  auto [publisher, reviewer] = live_script("acme", "greeter", kHello);
  second_version(publisher, reviewer);

  CliRun canary = as(reviewer, where({"alias", "canary", "set"}, {"live", "2", "--weight", "30"}));
  ASSERT_EQ(canary.status, 0) << canary;
  EXPECT_EQ(canary.out, "alias live of acme/greeter → version 1, canary version 2 (30 %)\n")
      << canary;
  CliRun aliases = as(reviewer, where({"--json", "alias", "list"}));
  ASSERT_EQ(aliases.status, 0) << aliases;
  json live = json::parse(aliases.out)["aliases"][0];
  EXPECT_EQ(live["version"], 1) << aliases;
  EXPECT_EQ(live["canary"], (json{{"version", 2}, {"weight", 30}})) << aliases;
  CliRun table = as(reviewer, where({"alias", "list"}));
  ASSERT_EQ(table.status, 0) << table;
  EXPECT_TRUE(has(table.out, "CANARY")) << table;
  EXPECT_TRUE(has(table.out, "2 (30 %)")) << table;

  CliRun cleared = as(reviewer, where({"alias", "canary", "clear"}, {"live"}));
  ASSERT_EQ(cleared.status, 0) << cleared;
  EXPECT_EQ(cleared.out, "alias live of acme/greeter → version 1, no canary\n") << cleared;
  CliRun no_alias = as(reviewer, where({"alias", "canary", "set"}, {"beta", "2", "--weight", "5"}));
  EXPECT_EQ(no_alias.status, 23) << no_alias;
  CliRun too_heavy =
      as(reviewer, where({"alias", "canary", "set"}, {"live", "2", "--weight", "100"}));
  EXPECT_EQ(too_heavy.status, 2) << too_heavy;

  // The source alone on stdout; who published and approved it, by name, on stderr.
  CliRun shown = as(publisher, where({"version", "show"}, {"1"}));
  ASSERT_EQ(shown.status, 0) << shown;
  EXPECT_EQ(shown.out, kHello) << shown;
  EXPECT_TRUE(has(shown.err, "by acme-publisher")) << shown;
  EXPECT_TRUE(has(shown.err, "by acme-reviewer")) << shown;

  CliRun deprecated = as(reviewer, where({"version", "deprecate"}, {"1"}));
  ASSERT_EQ(deprecated.status, 0) << deprecated;
  EXPECT_TRUE(has(deprecated.out, "version 1 is now deprecated")) << deprecated;
  CliRun still_served = as(publisher, where({"invoke"}, {"--input", R"({"name": "bo"})"}));
  EXPECT_EQ(still_served.status, 0) << still_served;
  EXPECT_TRUE(has(still_served.err, "deprecated")) << still_served;

  CliRun publisher_may_not = as(publisher, where({"version", "disable"}, {"2"}));
  EXPECT_EQ(publisher_may_not.status, 22) << publisher_may_not;
  CliRun disabled = as(reviewer, where({"version", "disable"}, {"2"}));
  ASSERT_EQ(disabled.status, 0) << disabled;
  EXPECT_TRUE(has(disabled.out, "version 2 is now disabled")) << disabled;
  CliRun gone = as(publisher, where({"invoke"}, {"--version", "2"}));
  EXPECT_EQ(gone.status, 24) << gone;
  EXPECT_TRUE(has(gone.err, "HTTP 410")) << gone;
}

TEST_F(ResourcesCli, WebhookSecretIsShownOnceAndDeliveriesAreListed) {
  corral::testing::WebhookReceiver receiver;
  auto policy = write("policy.yaml",
                      "tenants:\n"
                      "  acme:\n"
                      "    capabilities:\n"
                      "      http:\n"
                      "        allow: [\"" +
                          receiver.origin() +
                          "\"]\n"
                          "        allow_private: [127.0.0.1]\n");
  ASSERT_EQ(as(admin_, {"policy", "put", policy}).status, 0);
  auto [publisher, reviewer] = live_script("acme", "greeter", kHello);

  CliRun publisher_may_not = as(publisher, {"webhook", "rotate-secret", "--tenant", "acme"});
  EXPECT_EQ(publisher_may_not.status, 22) << publisher_may_not;
  CliRun made = as(admin_, {"webhook", "rotate-secret", "--tenant", "acme"});
  ASSERT_EQ(made.status, 0) << made;
  EXPECT_TRUE(std::regex_match(made.out, std::regex("whsec_[0-9a-f]{64}\n"))) << made;
  EXPECT_TRUE(has(made.err, "created the webhook secret of tenant acme")) << made;
  CliRun again = as(admin_, {"webhook", "rotate-secret", "--tenant", "acme"});
  ASSERT_EQ(again.status, 0) << again;
  EXPECT_NE(again.out, made.out);
  EXPECT_TRUE(has(again.err, "replaced")) << again;

  CliRun submitted =
      as(publisher, where({"jobs", "submit"}, {"--input", R"({"name": "cy"})", "--callback-url",
                                               receiver.url("/hooks/greeter")}));
  ASSERT_EQ(submitted.status, 0) << submitted;
  std::string job = submitted.out.substr(0, submitted.out.size() - 1);
  ASSERT_TRUE(receiver.wait_for(1, std::chrono::seconds(30)));

  // The delivery is marked delivered once the receiver's answer is recorded: ask until it is.
  json delivery;
  for (int tries = 0; tries < 100; ++tries) {
    CliRun listed = as(publisher, {"--json", "webhook", "deliveries", "--tenant", "acme"});
    ASSERT_EQ(listed.status, 0) << listed;
    json deliveries = json::parse(listed.out)["deliveries"];
    if (!deliveries.empty() && deliveries[0]["state"] == "delivered") {
      delivery = deliveries[0];
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_TRUE(delivery.is_object()) << "the delivery was never marked delivered";
  EXPECT_EQ(delivery["job_id"], job);
  CliRun table = as(publisher, {"webhook", "deliveries", "--tenant", "acme"});
  ASSERT_EQ(table.status, 0) << table;
  std::vector<std::string> cells = row(table.out, delivery["id"].get<std::string>());
  ASSERT_GE(cells.size(), 5u) << table;
  EXPECT_EQ(cells[1], job);
  EXPECT_EQ(cells[2], "delivered");
  EXPECT_EQ(cells[4], "200");
  CliRun dead = as(publisher, {"webhook", "deliveries", "--tenant", "acme", "--state", "dead"});
  ASSERT_EQ(dead.status, 0) << dead;
  EXPECT_EQ(row(dead.out, delivery["id"].get<std::string>()).size(), 0u) << dead;
}

// One exit status per kind of answer, none shared with a script outcome's (docs/cli.md).
TEST_F(ResourcesCli, ExitStatusesTellApartUnreachableRefusalsAndOutcomes) {
  auto [publisher, reviewer] = live_script("acme", "greeter", kHello);
  ClosedPort closed;
  ASSERT_NE(closed.port(), 0);
  struct Case {
    const char* what;
    CliRun run;
    int status;
    const char* said;
  };
  std::vector<Case> cases = {
      {"unreachable",
       corral({"--server", "http://127.0.0.1:" + std::to_string(closed.port()), "--token", "x",
               "tenant", "list"}),
       32, "cannot reach the server"},
      {"unauthenticated", corral({"--server", server_, "tenant", "list"}), 21, "HTTP 401"},
      {"forbidden", as(publisher, where({"alias", "set"}, {"live", "1"})), 22, "HTTP 403"},
      {"not found", as(publisher, {"invoke", "--tenant", "acme", "--script", "nope"}), 23,
       "HTTP 404"},
      {"conflict", as(admin_, {"tenant", "create", "acme"}), 25, "HTTP 409"},
      {"bad request", as(publisher, where({"publish", write("bad.lua", "function (\n")})), 20,
       "HTTP 400"},
      {"script error", as(publisher, where({"invoke"}, {"--input", R"({"fail": true})"})), 1,
       "no such order"},
      {"ok", as(publisher, where({"invoke"}, {"--input", R"({"name": "di"})"})), 0, ""},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(c.run.status, c.status) << c.what << ": " << c.run;
    EXPECT_TRUE(has(c.run.err, c.said)) << c.what << ": " << c.run;
  }
}

// Listings and the audit trail name the token's subject (the person or service it was made for)
// where a person reads them; --json keeps the id and adds the subject beside it.
TEST_F(ResourcesCli, ListingsAndAuditNameSubjectsNotTokenIds) {
  auto [publisher, reviewer] = live_script("acme", "greeter", kHello);
  std::string auditor = make_token("acme", "auditor", "carol-audit");

  for (const std::string& token : {admin_, auditor}) {
    CliRun audit = as(token, {"audit", "--tenant", "acme", "--action", "version.approve"});
    ASSERT_EQ(audit.status, 0) << audit;
    EXPECT_TRUE(has(audit.out, "acme-reviewer")) << audit;
    EXPECT_FALSE(std::regex_search(audit.out, kTokenId)) << audit;
  }
  CliRun audit_json =
      as(admin_, {"--json", "audit", "--tenant", "acme", "--action", "version.approve"});
  ASSERT_EQ(audit_json.status, 0) << audit_json;
  json entry = json::parse(audit_json.out)["entries"][0];
  EXPECT_TRUE(std::regex_match(entry["principal"].get<std::string>(), kTokenId)) << audit_json;
  EXPECT_EQ(entry["principal_subject"], "acme-reviewer") << audit_json;
  // The chain hashes what was stored, which is unchanged.
  EXPECT_EQ(as(auditor, {"audit", "verify"}).status, 0);

  CliRun versions = as(publisher, where({"versions"}));
  ASSERT_EQ(versions.status, 0) << versions;
  std::vector<std::string> cells = row(versions.out, "1");
  EXPECT_NE(std::find(cells.begin(), cells.end(), "acme-publisher"), cells.end()) << versions;
  EXPECT_NE(std::find(cells.begin(), cells.end(), "acme-reviewer"), cells.end()) << versions;
  // A revoked token's entry says whose it was.
  CliRun made = as(admin_, {"--json", "token", "create", "--tenant", "acme", "--role", "invoker",
                            "--subject", "dave-leaving"});
  ASSERT_EQ(made.status, 0) << made;
  std::string id = json::parse(made.out)["id"];
  ASSERT_EQ(as(admin_, {"token", "revoke", "--tenant", "acme", id}).status, 0);
  CliRun revoked = as(auditor, {"audit", "--tenant", "acme", "--action", "token.revoke"});
  ASSERT_EQ(revoked.status, 0) << revoked;
  EXPECT_TRUE(has(revoked.out, "of \"dave-leaving\"")) << revoked;

  for (const auto& command : {where({"alias", "list"}), where({"alias", "history"}, {"live"})}) {
    CliRun listed = as(publisher, command);
    ASSERT_EQ(listed.status, 0) << listed;
    EXPECT_TRUE(has(listed.out, "acme-reviewer")) << listed;
    EXPECT_FALSE(std::regex_search(listed.out, kTokenId)) << listed;
  }
}

TEST_F(ApiCliTest, EveryNewCommandHasHelp) {
  for (std::vector<std::string> command : {std::vector<std::string>{"secret", "put"},
                                           {"secret", "list"},
                                           {"secret", "delete"},
                                           {"runs", "list"},
                                           {"runs", "show"},
                                           {"runs", "replay"},
                                           {"version", "show"},
                                           {"version", "deprecate"},
                                           {"version", "disable"},
                                           {"alias", "canary", "set"},
                                           {"alias", "canary", "clear"},
                                           {"webhook", "rotate-secret"},
                                           {"webhook", "deliveries"}}) {
    command.push_back("--help");
    CliRun help = corral(command);
    EXPECT_EQ(help.status, 0) << command[0] << " " << command[1] << ": " << help;
    EXPECT_TRUE(has(help.out, "--tenant")) << command[0] << " " << command[1] << ": " << help;
  }
  CliRun top = corral({"--help"});
  for (const char* words : {"20 bad request", "32 cannot reach the server", "1 script_error"})
    EXPECT_TRUE(has(top.out, words)) << words << "\n" << top;
}

}  // namespace
